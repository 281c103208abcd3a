/**
 * Predictions are counted in this many bins, by task: a binary classifier's positive-class probability and a
 * multiclass one's top-class probability in equal-width bins over [0, 1]; a regression's value in bins cut at the
 * ventiles of its predictions on the test set at validation (the deploy's `predictionEdges`). Workflow-safe: no
 * imports.
 */
export const PREDICTION_BINS = 20;
