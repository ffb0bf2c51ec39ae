// The status page: poll /admin/status.json, fill the tables, chart the last minutes.
"use strict";

document.addEventListener("DOMContentLoaded", function () {
  const root = document.getElementById("admin");
  const el = webchat.el;
  const POLL_MS = 2000;
  const WINDOW_S = 600;
  // Samples of the push server's counters; rates are their differences.
  const samples = [];

  function text(id, value) {
    document.getElementById(id).textContent = value === null || value === undefined ? "–" : String(value);
  }

  function uptime(started, now) {
    if (!started) return "–";
    let seconds = Math.max(0, Math.floor(now - started));
    const days = Math.floor(seconds / 86400); seconds -= days * 86400;
    const hours = Math.floor(seconds / 3600); seconds -= hours * 3600;
    const minutes = Math.floor(seconds / 60); seconds -= minutes * 60;
    if (days) return days + "d " + hours + "h";
    if (hours) return hours + "h " + minutes + "m";
    return minutes + "m " + seconds + "s";
  }

  function rows(tbody, items, cells) {
    tbody.replaceChildren();
    for (const item of items) {
      const row = el("tr");
      for (const cell of cells(item)) row.append(el("td", null, String(cell)));
      tbody.append(row);
    }
  }

  // Rates between consecutive samples: [[time, per-second value], ...].
  function rates(key, scale) {
    const points = [];
    for (let i = 1; i < samples.length; i++) {
      const a = samples[i - 1], b = samples[i];
      if (a[key] === null || b[key] === null || b.time <= a.time) continue;
      // A counter that went down means the node restarted: start again from it.
      const delta = Math.max(0, b[key] - a[key]);
      points.push([b.time, (delta / (b.time - a.time)) * scale]);
    }
    return points;
  }

  function chart(id, points, now) {
    const line = document.getElementById(id).querySelector("polyline");
    const top = Math.max(1, ...points.map((p) => p[1]));
    line.setAttribute("points", points.map(function (p) {
      const x = 300 - ((now - p[0]) / WINDOW_S) * 300;
      const y = 58 - (p[1] / top) * 56;
      return x.toFixed(1) + "," + y.toFixed(1);
    }).join(" "));
    return points.length ? points[points.length - 1][1] : null;
  }

  function render(status) {
    const now = status.time;
    samples.push({ time: now, frames: status.frames_sent, drops: status.dropped });
    while (samples.length && samples[0].time < now - WINDOW_S) samples.shift();
    text("total-connections", status.total_connections);
    text("online-users", status.online_users);
    text("node-count", status.nodes.length);
    text("events-pending", status.events_pending);
    rows(document.getElementById("nodes"), status.nodes, (node) => [node.node, node.connections, uptime(node.started, now)]);
    rows(document.getElementById("rooms"), status.rooms, (room) => [room.name, room.members]);
    const frames = chart("frames-chart", rates("frames", 1), now);
    const drops = chart("drops-chart", rates("drops", 60), now);
    text("frames-rate", frames === null ? null : frames.toFixed(1));
    text("drops-rate", drops === null ? null : drops.toFixed(1));
    webchat.showError(document.getElementById("admin-problems"), status.problems.join("; "));
    root.dataset.samples = String(samples.length);
  }

  async function poll() {
    try {
      const result = await webchat.request("GET", root.dataset.statusUrl);
      if (result.ok) render(result.data);
      else webchat.showError(document.getElementById("admin-problems"), result.data.error || "status unavailable");
    } finally {
      setTimeout(poll, POLL_MS);
    }
  }

  poll();
});
