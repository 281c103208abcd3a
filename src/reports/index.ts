export { dataCheckHtml, dataCheckPage, type DataCheckPage } from './data-check';
export { embedJson, reportHtml, type ReportPage } from './html';
export { lifecycleHtml, lifecyclePage, lifecycleSummary, type LifecyclePage } from './lifecycle';
