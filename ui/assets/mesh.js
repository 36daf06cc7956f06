// The live picture of the mesh: polls mesh.json and draws it as SVG.
// Every string in mesh.json may come from another peer (nicknames travel
// by gossip), so it only ever reaches the page as text (textContent,
// setAttribute), never as markup.
"use strict";

(function () {
  const SVG = "http://www.w3.org/2000/svg";
  const W = 800, H = 560;
  // Above this many peers the circles shrink to fit the ring and the
  // labels move into tooltips and the table.
  const CROWDED = 24;
  let interval = 1000;
  let updates = 0;

  function el(ns, tag, attrs, text) {
    const e = ns ? document.createElementNS(ns, tag) : document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      e.setAttribute(k, String(v));
    }
    if (text !== undefined) {
      e.textContent = text;
    }
    return e;
  }

  function clear(node) {
    while (node.firstChild) {
      node.removeChild(node.firstChild);
    }
  }

  function short(s, n) {
    s = String(s || "");
    return s.length > n ? s.slice(0, n - 1) + "…" : s;
  }

  function rate(v) {
    if (typeof v !== "number") {
      return "…";
    }
    const units = ["B/s", "kB/s", "MB/s", "GB/s"];
    let i = 0;
    while (v >= 1000 && i < units.length - 1) {
      v /= 1000;
      i++;
    }
    return (v >= 100 || i === 0 ? v.toFixed(0) : v.toFixed(1)) + " " + units[i];
  }

  function plural(n, word) {
    return n + " " + word + (n === 1 ? "" : "s");
  }

  function bytes(v) {
    const units = ["B", "kB", "MB", "GB", "TB"];
    let i = 0;
    while (v >= 1000 && i < units.length - 1) {
      v /= 1000;
      i++;
    }
    return (i === 0 ? v.toFixed(0) : v.toFixed(1)) + " " + units[i];
  }

  // layout places the peers on a circle, this router first at the top,
  // in the order mesh.json lists them (stable from poll to poll).
  function layout(peers) {
    const pos = new Map();
    const n = peers.length;
    const r = n <= 1 ? 0 : Math.min(W, H) / 2 - 70;
    peers.forEach((p, i) => {
      const a = -Math.PI / 2 + (2 * Math.PI * i) / Math.max(n, 1);
      pos.set(p.name, { x: W / 2 + r * Math.cos(a), y: H / 2 + r * Math.sin(a) });
    });
    return pos;
  }

  function nick(byName, name) {
    const p = byName.get(name);
    return p && p.nickname ? p.nickname : name;
  }

  function trafficText(t) {
    if (!t) {
      return "";
    }
    let s = typeof t.tx_bytes_per_second === "number" ?
      "↑ " + rate(t.tx_bytes_per_second) + "  ↓ " + rate(t.rx_bytes_per_second) : "measuring…";
    if (t.partial) {
      s += " + kernel";
    }
    return s;
  }

  function draw(m) {
    const byName = new Map(m.peers.map((p) => [p.name, p]));
    const pos = layout(m.peers);
    const crowded = m.peers.length > CROWDED;
    const radius = crowded ? Math.max(3, (Math.PI * (Math.min(W, H) - 140)) / (m.peers.length * 2.5)) : 26;
    const edges = document.getElementById("edges");
    const labels = document.getElementById("labels");
    const nodes = document.getElementById("nodes");
    clear(edges);
    clear(labels);
    clear(nodes);

    for (const e of m.edges) {
      const a = pos.get(e.from), b = pos.get(e.to);
      if (!a || !b) {
        continue;
      }
      const g = el(SVG, "g", {
        class: "edge", "data-from": e.from, "data-to": e.to, "data-state": e.state,
        "data-datapath": e.datapath, "data-local": e.local ? "true" : "false", "data-via": e.via || "",
      });
      g.appendChild(el(SVG, "line", { x1: a.x, y1: a.y, x2: b.x, y2: b.y }));
      let tip = nick(byName, e.from) + " – " + nick(byName, e.to) + ": " + e.state + ", " + e.datapath;
      if (e.via) {
        tip += ", via " + nick(byName, e.via);
      }
      if (e.reason) {
        tip += " (" + e.reason + ")";
      }
      g.appendChild(el(SVG, "title", {}, tip));
      edges.appendChild(g);

      let label = trafficText(e.traffic);
      if (e.via) {
        label = (label ? label + "  " : "") + "via " + short(nick(byName, e.via), 20);
      }
      if (label && !crowded) {
        labels.appendChild(el(SVG, "text", {
          class: "edge-label", "data-from": e.from, "data-to": e.to,
          x: (a.x + b.x) / 2, y: (a.y + b.y) / 2 - 4,
        }, label));
      }
    }

    for (const p of m.peers) {
      const c = pos.get(p.name);
      const g = el(SVG, "g", {
        class: "node", "data-peer": p.name, "data-nickname": p.nickname || "",
        "data-state": p.state, "data-self": p.self ? "true" : "false",
        transform: "translate(" + c.x + "," + c.y + ")",
      });
      g.appendChild(el(SVG, "circle", { r: radius }));
      if (!crowded || p.self) {
        g.appendChild(el(SVG, "text", { class: "nick", y: -radius - 6 }, short(p.nickname || "(no nickname)", 24)));
        g.appendChild(el(SVG, "text", { class: "name", y: radius + 16 }, short(p.name, 24)));
      }
      g.appendChild(el(SVG, "title", {}, (p.nickname || "") + " " + p.name + " " + p.state + (p.address ? " " + p.address : "") + (p.version ? " version " + p.version : "")));
      nodes.appendChild(g);
    }

    const tbody = document.querySelector("#connections tbody");
    clear(tbody);
    for (const e of m.edges) {
      const t = e.traffic;
      const row = el(null, "tr", { "data-from": e.from, "data-to": e.to, "data-state": e.state, "data-datapath": e.datapath });
      const cells = [
        [nick(byName, e.from)], [nick(byName, e.to)], [e.state], [e.datapath],
        [e.via ? nick(byName, e.via) : ""], [e.local ? (e.encrypted ? "yes" : "no") : ""],
        [e.local && e.rtt_ms ? e.rtt_ms.toFixed(2) + " ms" : "", "num"],
        [t ? rate(t.tx_bytes_per_second) + (t.partial ? " + kernel" : "") : "not known here", "num"],
        [t ? rate(t.rx_bytes_per_second) + (t.partial ? " + kernel" : "") : "not known here", "num"],
        [e.reason || ""],
      ];
      for (const [text, cls] of cells) {
        row.appendChild(el(null, "td", cls ? { class: cls } : {}, text));
      }
      tbody.appendChild(row);
    }

    const dps = document.querySelector("#datapaths tbody");
    clear(dps);
    for (const d of m.datapaths) {
      const row = el(null, "tr", { "data-datapath": d.name });
      for (const [text, cls] of [[d.name], [rate(d.traffic.tx_bytes_per_second), "num"], [rate(d.traffic.rx_bytes_per_second), "num"],
        [bytes(d.traffic.tx_bytes), "num"], [bytes(d.traffic.rx_bytes), "num"]]) {
        row.appendChild(el(null, "td", cls ? { class: cls } : {}, text));
      }
      dps.appendChild(row);
    }

    const self = byName.get(m.self);
    const alive = m.peers.filter((p) => p.state === "alive" || p.state === "suspect").length;
    let summary = "seen from " + (self && self.nickname ? self.nickname + " (" + m.self + ")" : m.self) +
      ": " + plural(m.peers.length, "peer") + ", " + alive + " alive, " + plural(m.edges.filter((e) => e.local).length, "connection") + " of its own";
    if (m.remote_edges_omitted) {
      summary += "; too many peers to draw every pair: only the broken paths between other peers are drawn";
    }
    document.getElementById("summary").textContent = summary;
  }

  function setStatus(text, error) {
    const s = document.getElementById("status");
    s.textContent = text;
    s.className = error ? "error" : "";
    document.body.classList.toggle("stale", !!error);
  }

  async function poll() {
    try {
      const resp = await fetch("mesh.json", { cache: "no-store" });
      if (!resp.ok) {
        throw new Error("HTTP " + resp.status);
      }
      const m = await resp.json();
      if (m.interval_ms > 0) {
        interval = m.interval_ms;
      }
      draw(m);
      updates++;
      document.body.dataset.updates = String(updates);
      const errs = m.errors && m.errors.length ? " — could not read: " + m.errors.join("; ") : "";
      setStatus("updated " + new Date(m.time).toLocaleTimeString() + errs, errs !== "");
    } catch (err) {
      setStatus("cannot reach the router (" + err.message + "); the picture is the last one seen", true);
    }
    setTimeout(poll, interval);
  }

  poll();
})();
