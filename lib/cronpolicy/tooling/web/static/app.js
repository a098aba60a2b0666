// cronpolicy serve: keeps the live parts of the page current.  The page is
// whole without this script (the server draws everything, and a page with
// scripts off reloads itself); with it, the page fetches itself every
// data-refresh seconds and swaps in the parts marked data-live.  Text only
// ever comes from the server's escaped HTML, parsed inertly (DOMParser runs
// no script), so a name holding markup stays text.
(function () {
  "use strict";
  var seconds = Number(document.body.getAttribute("data-refresh"));
  if (!seconds || !window.fetch || !window.DOMParser) {
    return;
  }
  var busy = false;

  function say(text) {
    var found = document.getElementById("updated");
    if (found) {
      found.textContent = text;
    }
  }

  function look() {
    if (busy || document.hidden) {
      return;
    }
    busy = true;
    fetch(window.location.href, {credentials: "same-origin", cache: "no-store",
                                 headers: {"Accept": "text/html"}})
      .then(function (answer) {
        if (!answer.ok) {
          throw new Error("the server answered " + answer.status);
        }
        return answer.text();
      })
      .then(function (text) {
        var fresh = new DOMParser().parseFromString(text, "text/html");
        var parts = document.querySelectorAll("[data-live]");
        for (var i = 0; i < parts.length; i++) {
          var found = fresh.getElementById(parts[i].id);
          if (found) {
            parts[i].replaceWith(document.importNode(found, true));
          }
        }
      })
      .catch(function (error) {
        say("(not updated: " + error.message + ")");
      })
      .then(function () {
        busy = false;
      });
  }

  window.setInterval(look, seconds * 1000);
  document.addEventListener("visibilitychange", look);
}());
