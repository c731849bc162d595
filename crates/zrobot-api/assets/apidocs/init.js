// The robot's OpenAPI document in Swagger UI. "Try it out" sends the
// credential pasted into the dashboard (kept in this tab's session storage),
// unless the request already carries one given with "Authorize".
"use strict";

function dashboardCredential() {
  try {
    const saved = JSON.parse(sessionStorage.getItem("zrobot.credential") || "null");
    if (saved && saved.header && saved.token) return saved;
  } catch (_) { /* nothing kept */ }
  return null;
}

window.ui = SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  tryItOutEnabled: false,
  requestInterceptor: (req) => {
    const cred = dashboardCredential();
    const has = Object.keys(req.headers || {}).some((h) => /^zrobot(admin|user|secret)$/i.test(h));
    if (cred && !has) {
      req.headers = req.headers || {};
      req.headers[cred.header] = "Bearer " + cred.token;
    }
    return req;
  },
});
