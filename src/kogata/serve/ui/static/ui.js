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

  // POST one chat to the UI's chat endpoint and read the server-sent events: onDelta(text so far) for each
  // piece; resolves {text, usage, ttft, total} (milliseconds from the request), rejects with the server's message.
  function streamChat(endpoint, body, onDelta) {
    var started = performance.now(), ttft = null, answer = "", usage = null;
    return fetch(endpoint, {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf() },
      body: JSON.stringify(body)
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
              if (obj.usage) usage = obj.usage;
              var delta = obj.choices && obj.choices[0] && obj.choices[0].delta;
              if (delta && delta.content) {
                if (ttft === null) ttft = performance.now() - started;
                answer += delta.content; onDelta(answer);
              }
            });
          });
          return pump();
        });
      }
      return pump();
    }).then(function () { return { text: answer, usage: usage, ttft: ttft, total: performance.now() - started }; });
  }

  function postJSON(endpoint, body) {
    return fetch(endpoint, {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf() }, body: JSON.stringify(body)
    }).then(function (res) {
      return res.json().then(function (j) { if (!res.ok || j.error) throw new Error(errorText(j)); return j; },
        function () { throw new Error(res.status + ""); });
    });
  }

  function fill(template, values) {
    return template.replace(/\{(\w+)\}/g, function (m, k) { return values[k] === undefined || values[k] === null ? "-" : values[k]; });
  }

  function setupChat() {
    var root = document.getElementById("chat");
    if (!root) return;
    var form = document.getElementById("chat-form"), input = document.getElementById("chat-input");
    var log = document.getElementById("chat-log"), model = document.getElementById("chat-model");
    var status = document.getElementById("chat-status"), send = document.getElementById("chat-send");
    var search = document.getElementById("chat-search"), index = document.getElementById("chat-index");
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

    // the grounded answer's sources under its bubble: one line per cited passage, [n] title (source)
    function sources(body, j) {
      var li = body.parentNode;
      li.classList.add("grounded");
      li.dataset.status = j.status;
      if (j.citations && j.citations.length) {
        var head = document.createElement("p"), list = document.createElement("ol");
        head.className = "sources-head"; head.textContent = root.dataset.sources;
        list.className = "citations";
        j.citations.forEach(function (c) {
          var item = document.createElement("li");
          item.textContent = "[" + c.n + "] " + (c.title || c.source) + (c.title && c.source ? " (" + c.source + ")" : "");
          list.appendChild(item);
        });
        li.appendChild(head); li.appendChild(list);
      }
      var timing = document.createElement("p");
      timing.className = "muted timing";
      timing.textContent = fill(root.dataset.timing, { search: Math.round(j.search_ms), total: Math.round(j.latency_ms) });
      li.appendChild(timing);
    }

    function submit() {
      var text = input.value.trim();
      if (!text || busy) return;
      busy = true; send.disabled = true; status.textContent = "…";
      bubble("user", text);
      history.push({ role: "user", content: text });
      input.value = "";
      var out = bubble("assistant", "");
      var work;
      if (search && search.checked) {
        work = postJSON(root.dataset.grounded, { model: model.value, index: index.value, question: text }).then(function (j) {
          out.textContent = j.answer; sources(out, j); return j.answer;
        });
      } else {
        work = streamChat(root.dataset.endpoint, { model: model.value, messages: history }, function (a) { out.textContent = a; })
          .then(function (r) { return r.text; });
      }
      work.then(function (answer) {
        history.push({ role: "assistant", content: answer });
        status.textContent = "";
      }).catch(function (err) {
        status.textContent = root.dataset.error + " " + err.message;
        history.pop();
      }).finally(function () { busy = false; send.disabled = false; input.focus(); });
    }
  }

  // ---- playground: the same question to two served models at once, side by side, timed ----
  function setupCompare() {
    var root = document.getElementById("compare"), form = document.getElementById("compare-form");
    if (!root || !form) return;
    var input = document.getElementById("compare-input"), send = document.getElementById("compare-send");
    var status = document.getElementById("compare-status");
    form.addEventListener("submit", function (e) {
      e.preventDefault();
      var text = input.value.trim();
      if (!text || send.disabled) return;
      send.disabled = true; status.textContent = "…";
      var errors = [];
      var runs = ["a", "b"].map(function (side) {
        var box = document.getElementById("side-" + side), alias = document.getElementById("compare-" + side).value;
        var answer = box.querySelector(".answer");
        box.querySelector(".alias").textContent = alias;
        answer.textContent = "";
        ["latency", "ttft", "tokens"].forEach(function (c) { box.querySelector("." + c).textContent = "…"; });
        box.dataset.state = "running";
        return streamChat(root.dataset.endpoint, { model: alias, messages: [{ role: "user", content: text }], usage: true },
          function (a) { answer.textContent = a; }).then(function (r) {
          var u = r.usage || {};
          box.querySelector(".latency").textContent = fill(root.dataset.ms, { ms: Math.round(r.total) });
          box.querySelector(".ttft").textContent = r.ttft === null ? "-" : fill(root.dataset.ms, { ms: Math.round(r.ttft) });
          box.querySelector(".tokens").textContent = fill(root.dataset.tokens, { prompt: u.prompt_tokens, completion: u.completion_tokens });
          box.dataset.state = "done";
        }).catch(function (err) {
          box.dataset.state = "error";
          ["latency", "ttft", "tokens"].forEach(function (c) { box.querySelector("." + c).textContent = "-"; });
          errors.push(alias + ": " + err.message);
        });
      });
      Promise.all(runs).then(function () {
        status.textContent = errors.length ? root.dataset.error + " " + errors.join(" / ") : "";
        send.disabled = false;
      });
    });
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

  // ---- wizard: a data file over the limit is refused before it is sent (the server checks again) ----
  function setupUploadLimit() {
    var input = document.getElementById("data"), form = document.getElementById("wizard");
    if (!input || !form || !input.dataset.maxBytes) return;
    var max = parseInt(input.dataset.maxBytes, 10);
    function tooLarge() { return input.files && input.files.length && input.files[0].size > max; }
    function show() {
      var old = document.getElementById("err-data");
      if (old) old.remove();
      if (!tooLarge()) { input.removeAttribute("aria-invalid"); input.setAttribute("aria-describedby", "hint-data"); return false; }
      var p = document.createElement("p");
      p.className = "field-error"; p.id = "err-data"; p.setAttribute("role", "alert"); p.textContent = input.dataset.tooLarge;
      document.getElementById("hint-data").after(p);
      input.setAttribute("aria-invalid", "true"); input.setAttribute("aria-describedby", "err-data hint-data");
      return true;
    }
    input.addEventListener("change", show);
    form.addEventListener("submit", function (e) { if (show()) { e.preventDefault(); input.focus(); } });
  }

  document.addEventListener("DOMContentLoaded", function () { drawCharts(); setupChat(); setupCompare(); setupUploadLimit(); });
})();
