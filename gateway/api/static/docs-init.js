// Swagger UI over this gateway's own document. A file, not an inline script: the page's CSP
// allows scripts from this origin only.
window.ui = SwaggerUIBundle({
  url: new URL("openapi.json", document.baseURI).href,
  dom_id: "#swagger-ui",
  deepLinking: true,
  presets: [SwaggerUIBundle.presets.apis],
  layout: "BaseLayout",
  // The public validator badge would send the document to a third party.
  validatorUrl: null,
  showExtensions: true,
});
