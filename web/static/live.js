// lakeward live refresh: while a page has elements marked `data-live` (a run or task is still
// active), re-fetch the page every two seconds and swap those elements for their new versions.
// A log marked `data-follow` stays scrolled to the bottom if the reader had it there.
(function () {
  "use strict";
  var PERIOD_MS = 2000;

  function atBottom(el) {
    return el.scrollHeight - el.scrollTop - el.clientHeight < 40;
  }

  function refresh() {
    var live = document.querySelectorAll("[data-live][id]");
    if (live.length === 0) return;
    var follow = {};
    document.querySelectorAll("[data-follow][id]").forEach(function (el) {
      follow[el.id] = atBottom(el);
    });
    fetch(window.location.href, { credentials: "same-origin", headers: { "X-Live": "1" } })
      .then(function (response) { return response.ok ? response.text() : null; })
      .then(function (text) {
        if (text !== null) {
          var fresh = new DOMParser().parseFromString(text, "text/html");
          live.forEach(function (el) {
            var replacement = fresh.getElementById(el.id);
            if (replacement) el.replaceWith(document.importNode(replacement, true));
          });
          Object.keys(follow).forEach(function (id) {
            var el = document.getElementById(id);
            if (el && follow[id]) el.scrollTop = el.scrollHeight;
          });
        }
      })
      .catch(function () {})
      .then(function () { window.setTimeout(refresh, PERIOD_MS); });
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-follow][id]").forEach(function (el) {
      el.scrollTop = el.scrollHeight;
    });
    window.setTimeout(refresh, PERIOD_MS);
  });
})();
