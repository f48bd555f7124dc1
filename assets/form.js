/* The buyer's form on the hosted payment page and in the widget frame. Both call the checkout API. */
(function () {
  "use strict";
  var form = document.getElementById("nt-form");
  if (!form) return;
  var mode = form.getAttribute("data-mode");            // "page" or "widget"
  var sessionId = form.getAttribute("data-session");
  var parentOrigin = form.getAttribute("data-parent-origin");
  var msg = JSON.parse(document.getElementById("nt-messages").textContent);
  var orderData = null;                                  // the widget's order, from the host page
  var status = document.getElementById("nt-status");

  function $(name) { return form.elements.namedItem(name); }
  function val(name) { var e = $(name); return e && e.value.trim() !== "" ? e.value.trim() : null; }
  function say(text, kind) { status.textContent = text; status.className = "nt-status " + (kind || ""); status.focus(); }
  function post(path, body) {
    return fetch("/checkout-api/v1/sessions/" + encodeURIComponent(sessionId) + path, {
      method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body || {})
    }).then(function (r) { return r.json().then(function (j) { return { status: r.status, body: j }; }); });
  }
  // Minor units for people in the page's language, in integer arithmetic (as the server formats
  // them): "1.234,56 €" in German, "€1,234.56" in English.
  function money(n, currency) {
    var en = document.documentElement.lang === "en";
    var abs = Math.abs(n), cents = String(abs % 100), units = String(Math.floor(abs / 100));
    var grouped = units.replace(/\B(?=(\d{3})+(?!\d))/g, en ? "," : ".");
    var symbol = currency === "EUR" ? "€" : currency;
    var amount = grouped + (en ? "." : ",") + (cents.length < 2 ? "0" + cents : cents);
    return (n < 0 ? "-" : "") + (en ? symbol + amount : amount + " " + symbol);
  }
  function toParent(m) { if (mode === "widget") window.parent.postMessage(m, parentOrigin); }

  function updateMethod() {
    var dd = $("payment_method").value === "direct_debit";
    document.getElementById("nt-debit").hidden = !dd;
    $("iban").required = dd;
  }
  form.querySelectorAll("input[name=payment_method]").forEach(function (r) { r.addEventListener("change", updateMethod); });
  updateMethod();

  function updateIdentifier() {
    var opt = $("legal_form").selectedOptions[0];
    var needs = opt ? opt.getAttribute("data-requires") : "";
    document.getElementById("nt-id-hint").textContent = needs === "tax_id" ? msg.needs_tax_id : msg.needs_register;
  }
  $("legal_form").addEventListener("change", updateIdentifier);
  updateIdentifier();

  // Company search among known buyers.
  var timer = null;
  $("company_name").addEventListener("input", function () {
    clearTimeout(timer);
    var q = val("company_name");
    if (!q || q.length < 2) return;
    timer = setTimeout(function () {
      fetch("/checkout-api/v1/companies?client_secret=" + encodeURIComponent(sessionId) + "&q=" + encodeURIComponent(q))
        .then(function (r) { return r.ok ? r.json() : { data: [] }; })
        .then(function (j) {
          var list = document.getElementById("nt-companies");
          list.innerHTML = "";
          j.data.forEach(function (c) {
            var o = document.createElement("option");
            o.value = c.name;
            o.label = c.address.postal_code + " " + c.address.city;
            list.appendChild(o);
          });
        });
    }, 250);
  });

  function company() {
    return {
      name: val("company_name"), legal_form: val("legal_form"), registration_number: val("registration_number"),
      registration_court: val("registration_court"), tax_id: val("tax_id"),
      merchant_customer_id: orderData && orderData.debtor_company ? orderData.debtor_company.merchant_customer_id || null : null,
      address: { street: val("street"), house_number: val("house_number"), postal_code: val("postal_code"),
                 city: val("city"), country: val("country") }
    };
  }

  function fill(c, person) {
    if (!c) return;
    var set = function (n, v) { if (v != null && $(n)) $(n).value = v; };
    set("company_name", c.name); set("legal_form", c.legal_form); set("registration_number", c.registration_number);
    set("registration_court", c.registration_court); set("tax_id", c.tax_id);
    if (c.address) { set("street", c.address.street); set("house_number", c.address.house_number);
      set("postal_code", c.address.postal_code); set("city", c.address.city); set("country", c.address.country); }
    if (person) set("email", person.email);
    updateIdentifier();
  }

  function showErrors(errors) {
    form.querySelectorAll("[aria-invalid]").forEach(function (e) { e.removeAttribute("aria-invalid"); });
    var lines = errors.map(function (e) {
      var field = (e.source || "").split(".").pop();
      var map = { name: "company_name" };
      var el = $(map[field] || field);
      if (el && el.setAttribute) el.setAttribute("aria-invalid", "true");
      return e.title;
    });
    say(msg.fix + " " + lines.join(" · "), "error");
  }

  form.addEventListener("submit", function (ev) {
    ev.preventDefault();
    var body = { payment_method: $("payment_method").value, iban: val("iban"), terms_accepted: $("terms").checked,
                 locale: document.documentElement.lang };
    var person = { email: val("email") };
    if (mode === "page") {
      body.order = { debtor_company: company(), debtor_person: person };
    } else {
      if (!orderData) { say(msg.wait, "error"); return; }
      var o = JSON.parse(JSON.stringify(orderData));
      o.debtor_company = company();
      o.debtor_person = Object.assign({}, o.debtor_person || {}, person);
      body.order = o;
    }
    var button = form.querySelector("button[type=submit]");
    button.disabled = true;
    say(msg.checking, "");
    post("/authorize", body).then(function (r) {
      button.disabled = false;
      if (r.status === 200) {
        var a = r.body;
        if (a.state === "declined") {
          say(msg.declined, "error");
          if (mode === "page") {
            var back = document.getElementById("nt-back");
            back.href = a.redirect_url; back.hidden = false;
          } else {
            toParent({ type: "netterms:result", ok: false, result: { state: "declined", decline_reason: a.decline_reason } });
          }
          return;
        }
        say(msg.approved, "ok");
        if (mode === "page") { window.location.assign(a.redirect_url); return; }
        toParent({ type: "netterms:result", ok: true, result: { state: a.state, order_id: a.order_id,
          debtor_company: a.debtor_company, amount: a.amount, duration: a.duration, delivery_address: a.delivery_address } });
      } else if (r.status === 422 || r.status === 400) {
        showErrors(r.body.errors || []);
        if (mode === "widget" && !orderData) toParent({ type: "netterms:result", ok: false, result: { state: "validation_error", errors: r.body.errors } });
      } else {
        say((r.body.errors && r.body.errors[0] && r.body.errors[0].title) || msg.failed, "error");
      }
    }, function () { button.disabled = false; say(msg.failed, "error"); });
  });

  var cancel = document.getElementById("nt-cancel");
  cancel.addEventListener("click", function () {
    if (mode === "widget") { toParent({ type: "netterms:close" }); return; }
    post("/cancel").then(function (r) { if (r.status === 200) window.location.assign(r.body.redirect_url); });
  });

  if (mode === "widget") {
    window.addEventListener("message", function (ev) {
      if (ev.origin !== parentOrigin || ev.source !== window.parent) return;
      var m = ev.data || {};
      if (m.type !== "netterms:order" || !m.order_data) return;
      orderData = m.order_data;
      fill(orderData.debtor_company, orderData.debtor_person);
      if (m.payment_method === "direct_debit") { $("payment_method").value = "direct_debit"; updateMethod(); }
      var sum = document.getElementById("nt-summary");
      var a = orderData.amount || {};
      sum.textContent = (m.merchant_name ? m.merchant_name + " · " : "") + msg.total + " " +
        (a.gross != null ? money(a.gross, a.currency || "EUR") : "") + " · " +
        msg.terms_days.replace("{days}", orderData.duration);
      document.getElementById("nt-ready").hidden = false;
    });
    toParent({ type: "netterms:ready" });
  }
})();
