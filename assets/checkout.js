/* netterms checkout SDK: NettermsCheckout.mount({client_secret, merchant_name, order_data, options}) → Promise.
   Opens the netterms widget in an iframe and talks to it only by postMessage, checking origins both ways. */
(function () {
  "use strict";
  var script = document.currentScript;
  var base = new URL(script.src).origin;

  function mount(opts) {
    return new Promise(function (resolve, reject) {
      if (!opts || typeof opts.client_secret !== "string" || !opts.order_data) {
        reject({ state: "validation_error", errors: [{ source: "client_secret", title: "client_secret (from the widget session) and order_data are required" }] });
        return;
      }
      var overlay = document.createElement("div");
      overlay.setAttribute("data-netterms", "overlay");
      overlay.style.cssText = "position:fixed;inset:0;background:rgba(15,23,42,.55);display:flex;align-items:center;" +
        "justify-content:center;z-index:2147483647;padding:1rem";
      var frame = document.createElement("iframe");
      frame.title = "netterms checkout";
      frame.src = base + "/widget/" + encodeURIComponent(opts.client_secret) + "?origin=" + encodeURIComponent(window.location.origin);
      frame.style.cssText = "width:100%;max-width:34rem;height:min(46rem,100%);border:0;border-radius:12px;background:#fff";
      function cleanup() {
        window.removeEventListener("message", onMessage);
        if (overlay.parentNode) overlay.parentNode.removeChild(overlay);
      }
      function onMessage(ev) {
        if (ev.origin !== base || ev.source !== frame.contentWindow) return;
        var m = ev.data || {};
        if (m.type === "netterms:ready") {
          frame.contentWindow.postMessage({
            type: "netterms:order",
            order_data: opts.order_data,
            merchant_name: opts.merchant_name || "",
            payment_method: (opts.options && opts.options.payment_method) || "bank_transfer"
          }, base);
        } else if (m.type === "netterms:result") {
          cleanup();
          if (m.ok) resolve(m.result); else reject(m.result);
        } else if (m.type === "netterms:close") {
          cleanup();
          reject({ state: "canceled" });
        }
      }
      window.addEventListener("message", onMessage);
      overlay.appendChild(frame);
      document.body.appendChild(overlay);
    });
  }

  window.NettermsCheckout = { mount: mount };
})();
