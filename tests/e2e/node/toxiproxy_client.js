// Drives `cairn fault serve` with the npm package toxiproxy-node-client, unchanged, and prints
// one JSON line of what it saw. argv: API base URL, echo server address, module directory.
"use strict";
const path = require("path");
const net = require("net");
const { Toxiproxy } = require(path.join(process.argv[4], "node_modules", "toxiproxy-node-client"));

const api = process.argv[2];
const upstream = process.argv[3];

// The fastest of five round trips on one connection: load on the machine only adds delay.
function rtt(listen) {
  return new Promise((resolve, reject) => {
    const i = listen.lastIndexOf(":");
    const s = net.connect({ host: listen.slice(0, i), port: +listen.slice(i + 1) });
    s.setNoDelay(true);
    let t0;
    let best = Infinity;
    let left = 5;
    const ping = () => { t0 = process.hrtime.bigint(); s.write("x"); };
    s.on("connect", ping);
    s.on("data", () => {
      best = Math.min(best, Number(process.hrtime.bigint() - t0) / 1e6);
      if (--left > 0) ping(); else { s.destroy(); resolve(best); }
    });
    s.on("error", reject);
  });
}

function refused(listen) {
  return new Promise((resolve) => {
    const i = listen.lastIndexOf(":");
    const s = net.connect({ host: listen.slice(0, i), port: +listen.slice(i + 1) });
    s.on("connect", () => { s.destroy(); resolve(false); });
    s.on("error", (e) => resolve(e.code === "ECONNREFUSED"));
  });
}

async function main() {
  const out = {};
  const tp = new Toxiproxy(api);
  out.version = await tp.getVersion();
  const proxy = await tp.createProxy({ name: "node", listen: "127.0.0.1:0", upstream });
  out.created = { name: proxy.name, enabled: proxy.enabled, listen: proxy.listen };
  out.all = Object.keys(await tp.getAll());
  const got = await tp.get("node");
  out.got_listen = got.listen;
  out.rtt_before = await rtt(proxy.listen);
  const toxic = await proxy.addToxic({ type: "latency", name: "lat", stream: "downstream",
                                       toxicity: 1, attributes: { latency: 50 } });
  out.toxic = toxic.toJson();
  out.rtt_latency = await rtt(proxy.listen);
  const fetched = await proxy.getToxic("lat");
  out.fetched_attrs = fetched.attributes;
  const updated = await fetched.update({ attributes: { jitter: 5 }, toxicity: 1 });
  out.updated_attrs = updated.attributes;
  await updated.remove();
  out.rtt_removed = await rtt(proxy.listen);
  const disabled = await proxy.update({ enabled: false, listen: proxy.listen, upstream });
  out.disabled = disabled.enabled;
  out.refused = await refused(proxy.listen);
  const pop = await tp.populate([{ name: "pop1", listen: "127.0.0.1:0", upstream },
                                 { name: "pop2", listen: "127.0.0.1:0", upstream, enabled: false }]);
  out.populated = Object.keys(pop).sort();
  await tp.reset();
  out.after_reset = Object.values(await tp.getAll()).map((p) => p.enabled);
  try {
    await tp.get("missing");
    out.missing = "no error";
  } catch (e) {
    out.missing = e.message;
  }
  try {
    await tp.createProxy({ name: "node", listen: "127.0.0.1:0", upstream });
    out.duplicate = "no error";
  } catch (e) {
    out.duplicate = e.message;
  }
  await proxy.remove();
  out.final = Object.keys(await tp.getAll()).sort();
  console.log(JSON.stringify(out));
}

main().catch((e) => { console.error(e); process.exit(1); });
