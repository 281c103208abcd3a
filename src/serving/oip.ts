import { randomUUID } from 'node:crypto';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { MAX_BATCH_ROWS, ModelName, VersionName, type FeatureValue, type ModelManifest } from '../shared/gateway-api';
import { HttpError } from './http-error';
import { firstProblem } from './issues';
import type { Features, Prediction } from './model-host';
import type { GatewayCore } from './gateway-core';

/**
 * The Open Inference Protocol (the KServe v2 REST API, spoken by Triton, MLServer and KServe) on the gateway's public
 * listener, beside `/v1`:
 *
 *   GET  /v2                                   server metadata
 *   GET  /v2/health/live, /v2/health/ready     200 while the gateway serves
 *   GET  /v2/models/{model}[/versions/{v}]     model metadata: inputs (one tensor per feature) and outputs
 *   GET  /v2/models/{model}[/versions/{v}]/ready
 *   POST /v2/models/{model}[/versions/{v}]/infer
 *
 * An inference request carries one tensor per feature of the model, named as the feature, of shape [n] or [n, 1]
 * (n ≤ MAX_BATCH_ROWS rows): FP16/FP32/FP64 or an integer type for a numeric feature, BYTES (JSON strings) for a
 * categorical one. `data` is the row-major values, flat or nested. Rows go where `/v1` sends them: routed by the
 * request parameter `user_id` (sticky), else the `x-user-id` header, else the request's `id`, else at random; counted
 * in the same telemetry and input sketches; remembered for labels under `id` (one row) or `<id>/<i>` (the labels
 * endpoint of `/v1` takes them). The answer's `model_version` is the version that answered.
 *
 * Outputs, by task: a classifier's `label` (INT64 [n], a class of the manifest) and `probabilities` (FP32 [n, k], in
 * the order of the metadata's `parameters.classes`); a regression's `value` (FP64 [n]). `outputs` may ask for a
 * subset. Answers are JSON; request tensors may also come in the binary tensor data extension
 * (`Inference-Header-Content-Length`), as clients such as tritonclient send them by default; binary outputs are
 * answered as JSON, which such clients read as well.
 *
 * A path naming a version serves only the version the caller is routed to (409 otherwise): pinning a request to a
 * version would put traffic on a candidate that its rollout has not given it. Errors are `{ "error": "..." }` with
 * 400 (a bad request), 404 (no such model or version), 409, 413 or 5xx, as on `/v1`.
 */

/** What the protocol needs of the gateway. */
export type InferenceCore = Pick<GatewayCore, 'serveRows' | 'modelInfo'>;

/** The server's name in `GET /v2`. */
export const OIP_SERVER_NAME = 'ml-lifecycle-gateway';
const OIP_SERVER_VERSION = '0.1.0';

const NUMERIC_TYPES = new Set([
  'FP16',
  'FP32',
  'FP64',
  'INT8',
  'INT16',
  'INT32',
  'INT64',
  'UINT8',
  'UINT16',
  'UINT32',
  'UINT64',
]);
/** Bytes per element of the fixed-size types in the binary extension. */
const ELEMENT_BYTES: ReadonlyMap<string, number> = new Map(
  Object.entries({
    FP16: 2,
    FP32: 4,
    FP64: 8,
    INT8: 1,
    INT16: 2,
    INT32: 4,
    INT64: 8,
    UINT8: 1,
    UINT16: 2,
    UINT32: 4,
    UINT64: 8,
    BOOL: 1,
  }),
);

/** Longest request id (`id`) and user key taken; longer ones are refused. */
const MAX_ID_LENGTH = 200;

const Params = z.object({ model: ModelName });
const VersionParams = z.object({ model: ModelName, version: VersionName });

const Parameters = z.record(z.string(), z.unknown()).optional();
const InputTensor = z.object({
  name: z.string().min(1).max(256),
  shape: z.array(z.number().int().nonnegative()).min(1).max(2),
  datatype: z.string().min(1).max(16),
  parameters: Parameters,
  data: z.unknown().optional(),
});
const InferRequest = z.object({
  id: z.string().min(1).max(MAX_ID_LENGTH).optional(),
  parameters: Parameters,
  inputs: z.array(InputTensor).min(1).max(1000),
  outputs: z
    .array(z.object({ name: z.string().min(1).max(256), parameters: Parameters }))
    .max(16)
    .optional(),
});
type InferRequest = z.infer<typeof InferRequest>;

function parse<T>(schema: z.ZodType<T>, value: unknown, what: string): T {
  const parsed = schema.safeParse(value);
  if (!parsed.success) throw new HttpError(400, `invalid ${what}: ${firstProblem(parsed.error)}`);
  return parsed.data;
}

/** The model's input tensors: one per feature, [-1, 1]. */
function inputsOf(manifest: ModelManifest) {
  return manifest.features.map((f) => ({
    name: f.name,
    datatype: f.type === 'numeric' ? 'FP32' : 'BYTES',
    shape: [-1, 1],
  }));
}

/** The model's output tensors by task. */
function outputsOf(manifest: ModelManifest) {
  return manifest.task === 'regression'
    ? [{ name: 'value', datatype: 'FP64', shape: [-1] }]
    : [
        { name: 'label', datatype: 'INT64', shape: [-1] },
        { name: 'probabilities', datatype: 'FP32', shape: [-1, manifest.classes.length] },
      ];
}

/** Flattens nested `data` (row-major), refusing anything that is not an array of scalars. */
function flatten(data: unknown, into: unknown[], depth = 0): void {
  if (!Array.isArray(data)) {
    into.push(data);
    return;
  }
  if (depth > 2) throw new HttpError(400, 'invalid inference request: data nested deeper than the tensor shape');
  for (const item of data) flatten(item, into, depth + 1);
}

/** The values of a binary-extension tensor of `count` elements. */
function decodeBinary(bytes: Buffer, datatype: string, count: number, name: string): unknown[] {
  const fail = (why: string) => new HttpError(400, `invalid inference request: input '${name}': ${why}`);
  if (datatype === 'BYTES') {
    const out: string[] = [];
    let at = 0;
    while (at < bytes.length) {
      if (at + 4 > bytes.length) throw fail('a BYTES element is cut short');
      const length = bytes.readUInt32LE(at);
      at += 4;
      if (at + length > bytes.length) throw fail('a BYTES element is cut short');
      out.push(bytes.toString('utf8', at, at + length));
      at += length;
    }
    if (out.length !== count) throw fail(`${out.length} BYTES elements for a shape of ${count}`);
    return out;
  }
  const size = ELEMENT_BYTES.get(datatype);
  if (size === undefined) throw fail(`datatype ${datatype} is not supported`);
  if (bytes.length !== size * count) throw fail(`${bytes.length} bytes for ${count} ${datatype} elements`);
  const out = new Array<unknown>(count);
  for (let i = 0; i < count; i++) {
    const at = i * size;
    switch (datatype) {
      case 'FP16':
        out[i] = halfToNumber(bytes.readUInt16LE(at));
        break;
      case 'FP32':
        out[i] = bytes.readFloatLE(at);
        break;
      case 'FP64':
        out[i] = bytes.readDoubleLE(at);
        break;
      case 'INT8':
        out[i] = bytes.readInt8(at);
        break;
      case 'INT16':
        out[i] = bytes.readInt16LE(at);
        break;
      case 'INT32':
        out[i] = bytes.readInt32LE(at);
        break;
      case 'INT64':
        out[i] = Number(bytes.readBigInt64LE(at));
        break;
      case 'UINT8':
        out[i] = bytes.readUInt8(at);
        break;
      case 'UINT16':
        out[i] = bytes.readUInt16LE(at);
        break;
      case 'UINT32':
        out[i] = bytes.readUInt32LE(at);
        break;
      case 'UINT64':
        out[i] = Number(bytes.readBigUInt64LE(at));
        break;
      default:
        out[i] = bytes.readUInt8(at) !== 0;
    }
  }
  return out;
}

function halfToNumber(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exponent = (h >> 10) & 0x1f;
  const fraction = h & 0x3ff;
  if (exponent === 0) return sign * 2 ** -14 * (fraction / 1024);
  if (exponent === 31) return fraction ? Number.NaN : sign * Number.POSITIVE_INFINITY;
  return sign * 2 ** (exponent - 15) * (1 + fraction / 1024);
}

/** The request's JSON header and, in the binary extension, each input's bytes in order. */
function readBody(request: FastifyRequest): { json: unknown; binary: Buffer | null } {
  const body = request.body;
  if (!Buffer.isBuffer(body)) throw new HttpError(400, 'invalid inference request: a JSON body');
  const header = request.headers['inference-header-content-length'];
  const headerLength = header === undefined ? body.length : Number(header);
  if (!Number.isInteger(headerLength) || headerLength < 0 || headerLength > body.length) {
    throw new HttpError(400, 'invalid inference request: Inference-Header-Content-Length does not fit the body');
  }
  let json: unknown;
  try {
    json = JSON.parse(body.toString('utf8', 0, headerLength));
  } catch {
    // V8's message quotes the input: say only what is wrong (NaN and Infinity are not JSON).
    throw new HttpError(400, 'invalid inference request: the body is not JSON');
  }
  return { json, binary: header === undefined ? null : body.subarray(headerLength) };
}

/** The rows of a request: one feature value per input tensor per row, checked against the manifest. */
function rowsOf(request: InferRequest, manifest: ModelManifest, binary: Buffer | null): Features[] {
  const features = new Map(manifest.features.map((f) => [f.name, f.type]));
  let rows: number | undefined;
  let offset = 0;
  const columns = new Map<string, unknown[]>();
  for (const input of request.inputs) {
    const at = `input '${input.name}'`;
    const type = features.get(input.name);
    if (type === undefined) throw new HttpError(400, `invalid inference request: ${at} is not an input of the model`);
    if (columns.has(input.name)) throw new HttpError(400, `invalid inference request: ${at} is given twice`);
    const [n, width = 1] = input.shape;
    if (width !== 1 || n === undefined) {
      throw new HttpError(
        400,
        `invalid inference request: ${at} has shape [${input.shape.join(', ')}], not [n] or [n, 1]`,
      );
    }
    if (rows !== undefined && n !== rows) {
      throw new HttpError(400, `invalid inference request: ${at} has ${n} rows, another input ${rows}`);
    }
    rows = n;
    if (n > MAX_BATCH_ROWS) {
      throw new HttpError(400, `invalid inference request: at most ${MAX_BATCH_ROWS} rows per request, got ${n}`);
    }
    const wanted = type === 'numeric' ? NUMERIC_TYPES.has(input.datatype) : input.datatype === 'BYTES';
    if (!wanted) {
      throw new HttpError(
        400,
        `invalid inference request: ${at} is ${input.datatype}; the model takes ${type === 'numeric' ? 'a number type such as FP32' : 'BYTES'}`,
      );
    }
    let values: unknown[];
    const size = input.parameters?.['binary_data_size'];
    if (size !== undefined) {
      if (!binary || typeof size !== 'number' || !Number.isInteger(size) || size < 0 || offset + size > binary.length) {
        throw new HttpError(400, `invalid inference request: ${at}: binary_data_size does not fit the binary data`);
      }
      values = decodeBinary(binary.subarray(offset, offset + size), input.datatype, n, input.name);
      offset += size;
    } else {
      values = [];
      flatten(input.data, values);
      if (values.length !== n) {
        throw new HttpError(400, `invalid inference request: ${at} has ${values.length} values for ${n} rows`);
      }
    }
    columns.set(input.name, values);
  }
  for (const name of features.keys()) {
    if (!columns.has(name)) throw new HttpError(400, `invalid inference request: input '${name}' is missing`);
  }
  const scalar = (value: unknown): FeatureValue =>
    typeof value === 'number' || typeof value === 'string' ? value : (value as null);
  return Array.from({ length: rows ?? 0 }, (_, i) =>
    Object.fromEntries([...columns].map(([name, values]) => [name, scalar(values[i])])),
  );
}

/** The routing key: `parameters.user_id`, the `x-user-id` header, the request's `id`, or a fresh one. */
function userOf(request: InferRequest, headers: FastifyRequest['headers']): string {
  const parameter = request.parameters?.['user_id'];
  const header = headers['x-user-id'];
  const key = typeof parameter === 'string' ? parameter : typeof header === 'string' ? header : request.id;
  if (key !== undefined && (key.length === 0 || key.length > MAX_ID_LENGTH)) {
    throw new HttpError(400, `invalid inference request: user_id: 1 to ${MAX_ID_LENGTH} characters`);
  }
  return key ?? randomUUID();
}

function outputTensors(manifest: ModelManifest, predictions: Prediction[], requested: InferRequest['outputs']) {
  const all = outputsOf(manifest);
  const names = requested?.map((o) => o.name) ?? all.map((o) => o.name);
  const n = predictions.length;
  return names.map((name) => {
    const meta = all.find((o) => o.name === name);
    if (!meta) {
      throw new HttpError(
        400,
        `invalid inference request: output '${name}' is not an output of the model (${all.map((o) => o.name).join(', ')})`,
      );
    }
    if (name === 'value') return { name, datatype: 'FP64', shape: [n], data: predictions.map((p) => p.value ?? 0) };
    if (name === 'label') return { name, datatype: 'INT64', shape: [n], data: predictions.map((p) => p.label ?? 0) };
    const k = manifest.classes.length;
    const data: number[] = [];
    for (const p of predictions) {
      if (p.probabilities) data.push(...p.probabilities);
      else data.push(1 - (p.probability ?? 0), p.probability ?? 0);
    }
    return { name, datatype: 'FP32', shape: [n, k], data };
  });
}

/** The fastify plugin: the protocol's routes on the public listener, over `core`. */
export function openInference(core: InferenceCore, bodyLimit: number) {
  return async function routes(app: FastifyInstance): Promise<void> {
    // Requests are read as bytes, whatever their content type (tritonclient sends none): JSON, or the binary
    // extension's JSON header followed by tensor data.
    app.removeAllContentTypeParsers();
    app.addContentTypeParser('*', { parseAs: 'buffer' }, (_request, body, done) => done(null, body));

    app.get('/v2', async () => ({
      name: OIP_SERVER_NAME,
      version: OIP_SERVER_VERSION,
      extensions: ['binary_tensor_data'],
    }));
    app.get('/v2/health/live', async () => ({ live: true }));
    app.get('/v2/health/ready', async () => ({ ready: true }));

    const metadata = (model: string, version?: string) => {
      const info = core.modelInfo(model, version);
      if (!info.manifest) throw new HttpError(503, `version '${info.version}' of model '${model}' is not loaded`);
      return {
        name: model,
        versions: info.versions,
        platform: 'onnxruntime_onnx',
        inputs: inputsOf(info.manifest),
        outputs: outputsOf(info.manifest),
        parameters: {
          task: info.manifest.task,
          version: info.version,
          ...(info.manifest.task === 'regression' ? {} : { classes: info.manifest.classes }),
          ...(info.manifest.classNames ? { class_names: info.manifest.classNames } : {}),
        },
      };
    };
    const ready = (model: string, version?: string) => {
      const info = core.modelInfo(model, version);
      if (!info.ready) throw new HttpError(503, `model '${model}' is not ready`);
      return { name: model, ready: true };
    };
    app.get('/v2/models/:model', async (req) => metadata(parse(Params, req.params, 'path').model));
    app.get('/v2/models/:model/versions/:version', async (req) => {
      const { model, version } = parse(VersionParams, req.params, 'path');
      return metadata(model, version);
    });
    app.get('/v2/models/:model/ready', async (req) => ready(parse(Params, req.params, 'path').model));
    app.get('/v2/models/:model/versions/:version/ready', async (req) => {
      const { model, version } = parse(VersionParams, req.params, 'path');
      return ready(model, version);
    });

    const infer = async (req: FastifyRequest, model: string, pinned?: string) => {
      const { json, binary } = readBody(req);
      const request = parse(InferRequest, json, 'inference request');
      const manifest = core.modelInfo(model).manifest;
      if (!manifest) throw new HttpError(503, `model '${model}' is not loaded`);
      const rows = rowsOf(request, manifest, binary);
      if (rows.length === 0) throw new HttpError(400, 'invalid inference request: no rows');
      const userId = userOf(request, req.headers);
      const served = await core.serveRows(model, {
        userId,
        rows,
        batch: rows.length > 1,
        ...(request.id !== undefined ? { requestId: request.id } : {}),
        ...(pinned !== undefined ? { version: pinned } : {}),
        headers: req.headers,
      });
      return {
        model_name: model,
        model_version: served.version,
        id: served.requestId,
        parameters: { latency_ms: served.latencyMs, task: served.host.task },
        outputs: outputTensors(served.host.manifest, served.predictions, request.outputs),
      };
    };
    app.post('/v2/models/:model/infer', { bodyLimit }, async (req) =>
      infer(req, parse(Params, req.params, 'path').model),
    );
    app.post('/v2/models/:model/versions/:version/infer', { bodyLimit }, async (req) => {
      const { model, version } = parse(VersionParams, req.params, 'path');
      return infer(req, model, version);
    });
  };
}
