/**
 * A DNS client for tests: one query over UDP or TCP from this process (optionally from a given source address),
 * the raw answer and its decoding; undefined when nothing came back in time (a dropped query).
 */
import { createSocket } from "node:dgram";
import { connect } from "node:net";
import { type DecodedPacket, decode, encode, type RecordType } from "dns-packet";

export interface QueryOptions {
  type?: RecordType;
  source?: string;
  port?: number;
  timeoutMs?: number;
  /** Ask with EDNS (an OPT record offering 1232 bytes). */
  edns?: boolean;
}

export function queryBytes(name: string, opts: QueryOptions = {}): Buffer {
  return encode({
    type: "query",
    id: Math.floor(Math.random() * 65536),
    flags: 0x0100,
    questions: [{ type: opts.type ?? "A", name, class: "IN" }],
    ...(opts.edns
      ? {
          additionals: [
            {
              type: "OPT",
              name: ".",
              udpPayloadSize: 1232,
              extendedRcode: 0,
              ednsVersion: 0,
              flags: 0,
            } as never,
          ],
        }
      : {}),
  });
}

/** Send raw bytes over UDP; the first datagram back, or undefined after the timeout. */
export function sendUdp(server: string, bytes: Buffer, opts: QueryOptions = {}): Promise<Buffer | undefined> {
  return new Promise((resolve) => {
    const socket = createSocket(server.includes(":") ? "udp6" : "udp4");
    const done = (answer: Buffer | undefined) => {
      clearTimeout(timer);
      socket.close();
      resolve(answer);
    };
    const timer = setTimeout(() => done(undefined), opts.timeoutMs ?? 1000);
    socket.on("error", () => done(undefined));
    socket.on("message", (msg) => done(msg));
    const send = () => socket.send(bytes, opts.port ?? 53, server);
    if (opts.source) socket.bind({ address: opts.source, port: 0 }, send);
    else send();
  });
}

/** Send raw bytes as one TCP message; the first framed answer, or undefined (closed, or the timeout). */
export function sendTcp(server: string, bytes: Buffer, opts: QueryOptions = {}): Promise<Buffer | undefined> {
  return new Promise((resolve) => {
    const socket = connect({
      host: server,
      port: opts.port ?? 53,
      ...(opts.source ? { localAddress: opts.source } : {}),
    });
    let got = Buffer.alloc(0);
    const done = (answer: Buffer | undefined) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(answer);
    };
    const timer = setTimeout(() => done(undefined), opts.timeoutMs ?? 1000);
    socket.on("error", () => done(undefined));
    socket.on("end", () => done(undefined));
    socket.on("connect", () => {
      const head = Buffer.alloc(2);
      head.writeUInt16BE(bytes.length);
      socket.write(Buffer.concat([head, bytes]));
    });
    socket.on("data", (chunk: Buffer) => {
      got = Buffer.concat([got, chunk]);
      if (got.length >= 2 && got.length >= 2 + got.readUInt16BE(0))
        done(got.subarray(2, 2 + got.readUInt16BE(0)));
    });
  });
}

export async function query(
  server: string,
  name: string,
  opts: QueryOptions & { tcp?: boolean } = {},
): Promise<DecodedPacket | undefined> {
  const bytes = queryBytes(name, opts);
  const answer = opts.tcp ? await sendTcp(server, bytes, opts) : await sendUdp(server, bytes, opts);
  return answer ? decode(answer) : undefined;
}

/** The addresses (or PTR names) in an answer. */
export function dataOf(packet: DecodedPacket | undefined): string[] {
  return (packet?.answers ?? []).map((a) => String((a as { data: unknown }).data));
}
