/* replyflow dashboard behaviour: small, dependency-free, progressive (every form also works without it). */
(function () {
  "use strict";

  function $(selector, root) { return (root || document).querySelector(selector); }
  function $all(selector, root) { return Array.prototype.slice.call((root || document).querySelectorAll(selector)); }

  /* -- the menu on phones: a button opens and closes it ----------------------------------------------- */
  document.addEventListener("click", function (event) {
    var button = event.target instanceof Element ? event.target.closest("[data-nav-toggle]") : null;
    if (!button) { return; }
    var nav = document.getElementById(button.getAttribute("aria-controls"));
    if (!nav) { return; }
    var open = !nav.classList.contains("is-open");
    nav.classList.toggle("is-open", open);
    button.setAttribute("aria-expanded", open ? "true" : "false");
    if (open) { var first = nav.querySelector("a"); if (first) { first.focus(); } }
  });
  document.addEventListener("keydown", function (event) {
    if (event.key !== "Escape") { return; }
    var nav = document.querySelector(".sidenav.is-open");
    var button = document.querySelector("[data-nav-toggle]");
    if (nav && button) { nav.classList.remove("is-open"); button.setAttribute("aria-expanded", "false"); button.focus(); }
  });

  /* -- notices -------------------------------------------------------------------------------------- */
  document.addEventListener("click", function (event) {
    var target = event.target;
    if (target instanceof Element && target.matches("[data-dismiss='notice']")) {
      var area = document.getElementById("notice");
      if (area) { area.innerHTML = ""; }
    }
  });

  /* -- pasted token: format check while typing (never sent anywhere until the form is submitted) ------ */
  // A Facebook user or Page token is one long run of letters and digits starting with "EAA".
  var TOKEN_SHAPE = /^EAA[A-Za-z0-9]{20,}$/;

  // An Instagram Login token (Instagram User token) starts with "IGAA".
  var INSTAGRAM_SHAPE = /^IG(AA|QV|Q)[A-Za-z0-9_\-]{20,}$/;

  function describeInstagramToken(value) {
    if (/^EAA/.test(value)) {
      return { ok: false, text: "This is a Facebook token. Paste it in the Facebook steps below; this box takes Instagram Login tokens (they start with IGAA)." };
    }
    if (!/^IG/.test(value)) {
      return { ok: false, text: "Instagram Login tokens start with IGAA. Check that you copied the whole token." };
    }
    if (!INSTAGRAM_SHAPE.test(value)) {
      return { ok: false, text: "This token looks cut off or has characters an Instagram token never has. Copy it again." };
    }
    return { ok: true, text: "Looks like an Instagram Login token. replyflow will check it with Instagram when you continue." };
  }

  function describeToken(raw, kind) {
    var value = raw.trim();
    if (!value) { return { ok: false, empty: true, text: "" }; }
    if (/\s/.test(value)) {
      return { ok: false, text: "The token contains spaces or line breaks. Copy it again with the copy button in Graph API Explorer." };
    }
    if (kind === "instagram") { return describeInstagramToken(value); }
    if (/^(IGQ|IGAA)/.test(value)) {
      return { ok: false, text: "This is an Instagram Login token. Paste it under 'Connect with Instagram' above, or use a Facebook User token here (it starts with EAA)." };
    }
    if (/^[0-9]+\|/.test(value)) {
      return { ok: false, text: "This is an app token (it contains '|'). Use a User token instead: 'Get User Access Token' in Graph API Explorer." };
    }
    if (value.indexOf("access_token=") !== -1 || value.indexOf("http") === 0) {
      return { ok: false, text: "Paste only the token itself, not a link or 'access_token='." };
    }
    if (!/^EAA/.test(value)) {
      return { ok: false, text: "Facebook tokens start with EAA. Check that you copied the whole token." };
    }
    if (!TOKEN_SHAPE.test(value)) {
      return { ok: false, text: value.length < 23 ? "This token is too short: it looks cut off. Copy it again." : "The token contains characters a Facebook token never has. Copy it again." };
    }
    return { ok: true, text: "Looks like a Facebook token. replyflow will check it with Meta when you continue." };
  }

  function setupTokenField(input) {
    var output = document.getElementById(input.getAttribute("data-token-feedback"));
    var form = input.form;
    var submit = form ? $("[type=submit]", form) : null;
    function update() {
      var result = describeToken(input.value, input.getAttribute("data-token-kind"));
      if (output) {
        output.textContent = result.text;
        output.className = result.ok ? "field-ok" : (result.empty ? "help" : "field-error");
        output.hidden = result.empty;
      }
      input.setAttribute("aria-invalid", (!result.ok && !result.empty) ? "true" : "false");
      if (submit) { submit.disabled = !result.ok; }
    }
    input.addEventListener("input", update);
    update();
  }

  /* -- rule builder ---------------------------------------------------------------------------------- */
  function setupRepeat(container) {
    var template = document.getElementById(container.getAttribute("data-repeat-template"));
    var addButton = document.querySelector("[data-repeat-add='" + container.id + "']");
    var max = parseInt(container.getAttribute("data-repeat-max") || "10", 10);
    function refresh() {
      var rows = $all(".repeat-row", container);
      if (addButton) { addButton.hidden = rows.length >= max; }
      rows.forEach(function (row, index) {
        $all("[data-label-base]", row).forEach(function (el) {
          el.setAttribute("aria-label", el.getAttribute("data-label-base") + " " + (index + 1));
        });
      });
      document.dispatchEvent(new CustomEvent("rf:changed"));
    }
    if (addButton && template) {
      addButton.addEventListener("click", function () {
        var fragment = template.content.cloneNode(true);
        container.appendChild(fragment);
        $all("[data-limit]", container).forEach(setupLimit);
        refresh();
        var rows = $all(".repeat-row", container);
        var first = $("input, textarea", rows[rows.length - 1]);
        if (first) { first.focus(); }
      });
    }
    container.addEventListener("click", function (event) {
      var target = event.target;
      if (target instanceof Element && target.matches("[data-repeat-remove]")) {
        var row = target.closest(".repeat-row");
        if (row) { row.remove(); refresh(); }
        if (addButton) { addButton.focus(); }
      }
    });
    refresh();
  }

  function setupPostsMode(form) {
    var picker = document.getElementById("post-picker");
    function update() {
      var checked = $("input[name='posts_mode']:checked", form);
      if (picker) { picker.hidden = !checked || checked.value !== "specific"; }
    }
    $all("input[name='posts_mode']", form).forEach(function (el) { el.addEventListener("change", update); });
    update();
  }

  function setupMatchMode(form) {
    var keywords = document.getElementById("keywords-field");
    function update() {
      var select = $("select[name='match']", form);
      if (!select) { return; }
      if (keywords) { keywords.hidden = select.value === "any_comment"; }
      $all("[data-match-help]", form).forEach(function (el) {
        el.hidden = el.getAttribute("data-match-help") !== select.value;
      });
    }
    var select = $("select[name='match']", form);
    if (select) { select.addEventListener("change", update); }
    update();
  }

  function renderSample(text) {
    // The preview fills variables the way a real comment does: Meta gives replyflow the commenter's username
    // but no name, so {first_name} becomes the username, or the fallback written as {first_name|there}.
    return text
      .replace(/\{first_name\|([^{}|\n]{0,40})\}/g, function (_, fallback) { return fallback.trim(); })
      .replace(/\{(username|first_name)\}/g, "alex.rivera")
      .replace(/\{keyword\}/g, "link");
  }

  function setupDmPreview(form) {
    var preview = document.getElementById("dm-preview-messages");
    if (!preview) { return; }
    function update() {
      var textField = $("textarea[name='dm_text']", form);
      var text = textField ? textField.value.trim() : "";
      preview.innerHTML = "";
      var titles = $all("input[name='button_title']", form).map(function (el) { return el.value.trim(); }).filter(Boolean);
      var wrapper = document.createElement("div");
      var bubble = document.createElement("div");
      bubble.className = "dm-bubble";
      bubble.textContent = text ? renderSample(text) : "Your message appears here.";
      if (titles.length) {
        wrapper.className = "dm-card";
        wrapper.appendChild(bubble);
        var buttons = document.createElement("div");
        buttons.className = "dm-buttons";
        titles.forEach(function (title) {
          var b = document.createElement("div");
          b.className = "dm-button";
          b.textContent = title;
          buttons.appendChild(b);
        });
        wrapper.appendChild(buttons);
        preview.appendChild(wrapper);
      } else {
        preview.appendChild(bubble);
      }
      var counter = document.getElementById("dm-text-count");
      if (counter && textField) {
        var limit = titles.length ? 640 : 1000;
        var length = textField.value.length;
        var why = titles.length ? " (a message with buttons may have 640; without buttons, 1000)" : "";
        counter.textContent = length + " / " + limit + " characters" + why;
        if (length > limit) {
          counter.textContent += ": " + (length - limit) + " too many, shorten the message" + (titles.length ? " or remove the buttons" : "") + ".";
        }
        counter.className = length > limit ? "field-error" : "help";
      }
      var none = document.getElementById("dm-none");
      if (none) { none.hidden = Boolean(text || titles.length); }
    }
    form.addEventListener("input", update);
    document.addEventListener("rf:changed", update);
    update();
  }

  var TRIGGER_CONTEXT = {
    comment: "Replied to your comment on a post",
    live_comment: "Replied to your comment on a live video",
    story_reply: "Replied to your story reply",
    dm_keyword: "Replied to your message",
    story_mention: "Replied to your story mention"
  };

  function setupTrigger(form) {
    // Message triggers have no post to pick and no public reply; a Live comment has no public reply either.
    var group = $("[data-trigger-choices]", form);
    if (!group) { return; }
    var messageTriggers = (group.getAttribute("data-message-triggers") || "").split(" ");
    function update() {
      var checked = $("input[name='trigger']:checked", form);
      var trigger = checked ? checked.value : "comment";
      $all("[data-comment-only]", form).forEach(function (el) { el.hidden = messageTriggers.indexOf(trigger) >= 0; });
      $all("[data-post-comment-only]", form).forEach(function (el) { el.hidden = trigger !== "comment"; });
      var context = document.getElementById("dm-preview-context");
      if (context) { context.textContent = TRIGGER_CONTEXT[trigger] || TRIGGER_CONTEXT.comment; }
      var gateOn = $("input[name='gate_on']", form);
      $all("[data-gate-fields]", form).forEach(function (el) { el.hidden = !(gateOn && gateOn.checked); });
    }
    form.addEventListener("change", update);
    update();
  }

  function setupGatePreview(form) {
    var gate = document.getElementById("dm-preview-gate");
    if (!gate) { return; }
    function update() {
      var on = $("input[name='gate_on']", form);
      var text = $("textarea[name='gate_text']", form);
      var title = $("input[name='gate_button']", form);
      gate.hidden = !(on && on.checked);
      var bubble = $(".dm-bubble", gate);
      var button = $(".dm-button", gate);
      if (bubble) { bubble.textContent = text && text.value.trim() ? renderSample(text.value.trim()) : "Your gate message appears here."; }
      if (button) { button.textContent = title && title.value.trim() ? title.value.trim() : "I follow now"; }
    }
    form.addEventListener("input", update);
    form.addEventListener("change", update);
    update();
  }

  /* -- visible limits: a counter under fields with data-limit (nothing is cut off while pasting) --------- */
  function setupLimit(input) {
    if (input.getAttribute("data-limit-ready")) { return; }
    input.setAttribute("data-limit-ready", "1");
    var limit = parseInt(input.getAttribute("data-limit"), 10);
    var counter = document.createElement("p");
    counter.setAttribute("aria-live", "polite");
    input.insertAdjacentElement("afterend", counter);
    function update() {
      var length = input.value.length;
      counter.hidden = length < limit * 0.8;
      counter.className = length > limit ? "field-error" : "help";
      counter.textContent = length + " / " + limit + " characters" + (length > limit ? ": " + (length - limit) + " too many, shorten it." : "");
    }
    input.addEventListener("input", update);
    update();
  }

  function setup(root) {
    $all("[data-limit]", root).forEach(setupLimit);
    $all("input[data-token-feedback], textarea[data-token-feedback]", root).forEach(setupTokenField);
    $all("[data-repeat-template]", root).forEach(setupRepeat);
    $all("form[data-rule-form]", root).forEach(function (form) {
      setupPostsMode(form);
      setupMatchMode(form);
      setupDmPreview(form);
      setupTrigger(form);
      setupGatePreview(form);
    });
  }

  document.addEventListener("DOMContentLoaded", function () { setup(document); });
  document.addEventListener("htmx:afterSwap", function (event) {
    if (event.target instanceof Element) { setup(event.target); }
  });
})();
