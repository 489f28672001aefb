export * from './errors.js';
export * from './options.js';
export * from './job.js';
export * from './protocol.js';
export * from './system.js';
export * from './control.js';
export * from './batch.js';
export { renderErrorCatalogue, renderErrorCatalogueHtml } from './errors-doc.js';
export * from './dashboard.js';
