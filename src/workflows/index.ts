// The only workflowsPath: every workflow the workers run. The sandbox is hardened before any of them loads.
import './sandbox';
export { modelLifecycleWorkflow } from './model-lifecycle';
export { modelRegistryWorkflow } from './model-registry';
export { quotaPoolWorkflow } from './quota-pool';
export { quotaMonitorWorkflow } from './quota-monitor';
export { modelRollbackWorkflow } from './model-rollback';
export { alertRouterWorkflow } from './alert-router';
export { servingMonitorWorkflow } from './serving-monitor';
export { dataCheckWorkflow } from './data-check';
export { bakeSegmentWorkflow } from './lifecycle/bake-segment';
