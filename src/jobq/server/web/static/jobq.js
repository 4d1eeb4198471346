// jobq dashboard: behaviour that needs script. No inline script anywhere (the CSP forbids it).
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  // Forms that change something irrevocably ask first: <form data-confirm="Delete queue x?">.
  document.querySelectorAll("form[data-confirm]").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      if (!window.confirm(form.getAttribute("data-confirm"))) event.preventDefault();
    });
  });
});
