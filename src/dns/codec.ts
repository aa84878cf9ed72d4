/**
 * The parts of the `dns-packet` codec this server uses. Its record and name codecs are exported by the package
 * but not typed by @types/dns-packet, so their shape is stated here, once.
 */
import * as dnsPacket from "dns-packet";

export type { Question } from "dns-packet";
export const { decode } = dnsPacket;

interface PartCodec<T> {
  encode(value: T): Buffer;
  /** How many bytes the last decode read. */
  decode: { bytes: number } & ((buf: Buffer, offset?: number) => T);
}

export type OwnRecord = { type: "A" | "AAAA" | "PTR"; name: string; ttl: number; data: string };
export type OptRecord = {
  type: "OPT";
  name: ".";
  udpPayloadSize: number;
  extendedRcode: number;
  ednsVersion: number;
  flags: number;
};

const parts = dnsPacket as unknown as {
  name: PartCodec<string>;
  question: PartCodec<dnsPacket.Question>;
  answer: PartCodec<OwnRecord | OptRecord>;
};

export const nameCodec = parts.name;
export const questionCodec = parts.question;
export const recordCodec = parts.answer;
