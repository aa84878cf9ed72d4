// Tiny TCP/UDP server and client for the publish and bandwidth tests (plain Node, no tsx: starts fast).
//   serve tcp|udp PORT TEXT      answers every connection/datagram with "TEXT from <peer address>"
//   get tcp|udp HOST PORT        prints the answer; exit 1 after 2 s without one
//   sink PORT                    TCP server that reads everything and closes
//   send HOST PORT BYTES         sends BYTES over TCP, prints the seconds it took until the peer closed
import dgram from "node:dgram";
import net from "node:net";

const [cmd, a, b, c] = process.argv.slice(2);
const bare = (addr) => addr.replace(/^::ffff:/, "");

if (cmd === "serve" && a === "tcp") {
  net
    .createServer((s) => {
      s.end(`${c} from ${bare(s.remoteAddress)}\n`);
    })
    .listen({ port: Number(b), host: "::" }, () => console.log("ready"));
} else if (cmd === "serve" && a === "udp") {
  for (const type of ["udp4", "udp6"]) {
    const s = dgram.createSocket({ type, ipv6Only: type === "udp6" });
    s.on("message", (_m, r) => s.send(`${c} from ${bare(r.address)}\n`, r.port, r.address));
    s.bind(Number(b), type === "udp4" ? "0.0.0.0" : "::");
  }
  setTimeout(() => console.log("ready"), 100);
} else if (cmd === "get" && a === "tcp") {
  const s = net.connect({ host: b, port: Number(c) });
  let out = "";
  s.on("data", (d) => {
    out += d;
  });
  s.on("end", () => {
    process.stdout.write(out);
    process.exit(0);
  });
  s.on("error", (e) => {
    console.error(e.code);
    process.exit(1);
  });
  setTimeout(() => process.exit(1), 2000);
} else if (cmd === "get" && a === "udp") {
  const s = dgram.createSocket(b.includes(":") ? "udp6" : "udp4");
  s.on("message", (m) => {
    process.stdout.write(m);
    process.exit(0);
  });
  s.connect(Number(c), b, () => s.send("hi"));
  setTimeout(() => process.exit(1), 2000);
} else if (cmd === "sink") {
  net
    .createServer((s) => s.on("data", () => {}).on("end", () => s.end()))
    .listen(Number(a), "::", () => console.log("ready"));
} else if (cmd === "send") {
  const s = net.connect({ host: a, port: Number(b) }, () => {
    const t0 = process.hrtime.bigint();
    s.end(Buffer.alloc(Number(c)));
    s.on("close", () => {
      console.log((Number(process.hrtime.bigint() - t0) / 1e9).toFixed(3));
      process.exit(0);
    });
  });
  s.on("data", () => {});
  s.on("error", (e) => {
    console.error(e.code);
    process.exit(1);
  });
  setTimeout(() => process.exit(2), 20000);
} else {
  console.error(`unknown: ${process.argv.slice(2).join(" ")}`);
  process.exit(2);
}
