// kogata web UI: the few behaviours htmx does not cover. No inline scripts (the page's CSP forbids them).
(function () {
  "use strict";
  var csrf = function () { var m = document.querySelector('meta[name="csrf-token"]'); return m ? m.content : ""; };

  // ---- charts: the plotly bundle from the plotly Python package, loaded only on pages that draw one ----
  function drawCharts() {
    var charts = document.querySelectorAll("[data-chart]");
    if (!charts.length) return;
    var draw = function () {
      charts.forEach(function (el) {
        var values = JSON.parse(el.getAttribute("data-values") || "[]");
        var hours = values.map(function (_, i) { return i + ":00"; });
        window.Plotly.newPlot(el, [{ type: "bar", x: hours, y: values, marker: { color: "#1f4fb5" }, name: el.getAttribute("data-label") }],
          { margin: { l: 40, r: 10, t: 10, b: 40 }, height: 220, yaxis: { rangemode: "tozero" } },
          { displaylogo: false, responsive: true, staticPlot: true });
      });
    };
    if (window.Plotly) { draw(); return; }
    var s = document.createElement("script");
    s.src = "/ui/assets/plotly.min.js";
    s.onload = draw;
    document.head.appendChild(s);
  }

  // ---- playground: streamed chat; Enter sends, but never while an IME composition is open ----
  function composing(e, state) { return e.isComposing || e.keyCode === 229 || state.composing; }

  function setupChat() {
    var root = document.getElementById("chat");
    if (!root) return;
    var form = document.getElementById("chat-form"), input = document.getElementById("chat-input");
    var log = document.getElementById("chat-log"), model = document.getElementById("chat-model");
    var status = document.getElementById("chat-status"), send = document.getElementById("chat-send");
    var history = [], busy = false, state = { composing: false };
    input.addEventListener("compositionstart", function () { state.composing = true; });
    input.addEventListener("compositionend", function () { state.composing = false; });
    input.addEventListener("keydown", function (e) {
      if (e.key !== "Enter" || e.shiftKey) return;
      if (composing(e, state)) return;  // Enter confirms the conversion: not a send
      e.preventDefault();
      submit();
    });
    form.addEventListener("submit", function (e) { e.preventDefault(); submit(); });
    document.getElementById("chat-clear").addEventListener("click", function () { history = []; log.innerHTML = ""; });

    function bubble(role, text) {
      var li = document.createElement("li"), who = document.createElement("span"), body = document.createElement("span");
      li.className = role; who.className = "who";
      who.textContent = role === "user" ? root.dataset.you : root.dataset.bot;
      body.className = "body"; body.textContent = text;
      li.appendChild(who); li.appendChild(body); log.appendChild(li);
      return body;
    }

    function submit() {
      var text = input.value.trim();
      if (!text || busy) return;
      busy = true; send.disabled = true; status.textContent = "…";
      bubble("user", text);
      history.push({ role: "user", content: text });
      input.value = "";
      var out = bubble("assistant", ""), answer = "";
      fetch(root.dataset.endpoint, {
        method: "POST", credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf() },
        body: JSON.stringify({ model: model.value, messages: history })
      }).then(function (res) {
        if (!res.ok) {
          return res.json().then(function (j) { throw new Error(errorText(j)); }, function () { throw new Error(res.status + ""); });
        }
        var reader = res.body.getReader(), decoder = new TextDecoder(), buf = "";
        function pump() {
          return reader.read().then(function (r) {
            if (r.done) return;
            buf += decoder.decode(r.value, { stream: true });
            var parts = buf.split("\n\n");
            buf = parts.pop();
            parts.forEach(function (evt) {
              evt.split("\n").forEach(function (line) {
                if (line.indexOf("data: ") !== 0) return;
                var data = line.slice(6);
                if (data === "[DONE]") return;
                var obj = JSON.parse(data);
                if (obj.error) throw new Error(errorText(obj));
                var delta = obj.choices && obj.choices[0] && obj.choices[0].delta;
                if (delta && delta.content) { answer += delta.content; out.textContent = answer; }
              });
            });
            return pump();
          });
        }
        return pump();
      }).then(function () {
        history.push({ role: "assistant", content: answer });
        status.textContent = "";
      }).catch(function (err) {
        status.textContent = root.dataset.error + " " + err.message;
        history.pop();
      }).finally(function () { busy = false; send.disabled = false; input.focus(); });
    }
  }

  function errorText(j) {
    if (!j) return "";
    if (typeof j.error === "string") return j.error;
    if (j.error && j.error.message) return j.error.message;
    return JSON.stringify(j);
  }

  // ---- review queue: A approve, C correct (edit, then Ctrl+Enter saves), R reject, J / K next / previous ----
  function click(id) { var el = document.getElementById(id); if (el) { el.click(); return true; } return false; }
  document.addEventListener("keydown", function (e) {
    if (!document.getElementById("review-panel")) return;
    var tag = (e.target && e.target.tagName) || "";
    if (e.target && e.target.id === "correction" && e.key === "Enter" && (e.ctrlKey || e.metaKey) && !e.isComposing) {
      e.preventDefault(); click("btn-correct"); return;
    }
    if (tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT" || e.ctrlKey || e.metaKey || e.altKey || e.isComposing) return;
    var k = e.key.toLowerCase(), done = false;
    if (k === "a") done = click("btn-approve");
    else if (k === "r") done = click("btn-reject");
    else if (k === "c") { var c = document.getElementById("correction"); if (c) { c.focus(); done = true; } }
    else if (k === "j") done = click("nav-next");
    else if (k === "k") done = click("nav-prev");
    if (done) e.preventDefault();
  });

  document.addEventListener("DOMContentLoaded", function () { drawCharts(); setupChat(); });
})();
