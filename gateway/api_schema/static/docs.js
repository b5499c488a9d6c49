// Starts Swagger UI on /openapi.json. A file of its own, not an inline script, so the
// page keeps the gateway's content security policy (script-src 'self').
window.ui = SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  presets: [SwaggerUIBundle.presets.apis],
  layout: "BaseLayout",
  validatorUrl: null,
  tryItOutEnabled: false,
  persistAuthorization: false,
});
