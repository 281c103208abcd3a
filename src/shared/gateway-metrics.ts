/**
 * Names of the serving gateway's Prometheus series (`GET /metrics` on its public listener; what each counts is in
 * src/serving/prometheus-metrics.ts). A contract: PromQL rollout checks and the Grafana dashboard
 * (deploy/grafana/ml-lifecycle-dashboard.json) query them by these names. Workflow-safe: no imports.
 */
export const GatewayMetric = {
  requests: 'mlgw_requests_total',
  errors: 'mlgw_errors_total',
  invalidRequests: 'mlgw_invalid_requests_total',
  /** A histogram: its series are `_bucket` (with `le`), `_sum` and `_count`. */
  requestDuration: 'mlgw_request_duration_seconds',
  predictions: 'mlgw_predictions_total',
  predictedClasses: 'mlgw_predicted_class_total',
  positivePredictions: 'mlgw_positive_predictions_total',
  trafficWeight: 'mlgw_traffic_weight_percent',
} as const;
export type GatewayMetric = (typeof GatewayMetric)[keyof typeof GatewayMetric];
