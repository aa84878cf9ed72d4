/** What every program builder hands the loader, and the address words its constants are made of. */
import type { AttachTypeName } from "./abi.ts";

/** The words of an address as the program sees them: 1 for IPv4, 4 for IPv6. */
export type AddrWords = number[];

export interface ProgramSpec {
  name: string;
  progType: number;
  attachType: AttachTypeName;
  insns: Uint8Array;
}

/** Address bytes in network order -> the little-endian u32 words a BPF load yields. */
export function addrWords(bytes: Uint8Array): AddrWords {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const words: number[] = [];
  for (let i = 0; i < bytes.length; i += 4) words.push(dv.getUint32(i, true));
  return words;
}
