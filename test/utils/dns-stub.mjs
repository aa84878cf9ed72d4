// A stub upstream resolver for the DNS tests: answers A queries from a fixed table (argv[3], JSON name -> address)
// with TTL argv[4] on UDP port 53 of argv[2], NXDOMAIN for the rest, and prints "query NAME" for every query it
// gets, so a test can count what reached it. Prints "ready" once listening. Plain JS: it runs in another netns.
import { createSocket } from "node:dgram";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const { decode, encode } = require("dns-packet");
const [address, tableJson, ttlText] = process.argv.slice(2);
const table = JSON.parse(tableJson);
const ttl = Number(ttlText ?? 60);
const socket = createSocket(address.includes(":") ? "udp6" : "udp4");
socket.on("message", (msg, rinfo) => {
  let q;
  try {
    q = decode(msg);
  } catch {
    return;
  }
  const question = q.questions[0];
  console.log(`query ${question.name} from ${rinfo.address}`);
  const data = table[question.name.toLowerCase()];
  const answers = data && question.type === "A" ? [{ type: "A", name: question.name, ttl, data }] : [];
  const reply = encode({
    type: "response",
    id: q.id,
    flags: 0x0180 | (data ? 0 : 3),
    questions: q.questions,
    answers,
    ...(data
      ? {}
      : {
          authorities: [
            {
              type: "SOA",
              name: "example",
              ttl,
              data: {
                mname: "ns.example",
                rname: "h.example",
                serial: 1,
                refresh: 60,
                retry: 60,
                expire: 60,
                minimum: ttl,
              },
            },
          ],
        }),
  });
  socket.send(reply, rinfo.port, rinfo.address);
});
socket.bind({ address, port: 53 }, () => console.log("ready"));
process.stdin.resume();
process.stdin.on("end", () => process.exit(0));
