import { Client, Connection, type ConnectionOptions } from '@temporalio/client';
import { loadClientConnectConfig } from '@temporalio/envconfig';
import type { NativeConnectionOptions } from '@temporalio/worker';

/**
 * Temporal connection settings from the environment and the Temporal config file (`TEMPORAL_ADDRESS`,
 * `TEMPORAL_NAMESPACE`, `TEMPORAL_API_KEY`, `TEMPORAL_TLS*`, `TEMPORAL_PROFILE`), as every Temporal tool reads them.
 */
export function temporalSettings(): {
  connection: ConnectionOptions;
  native: NativeConnectionOptions;
  namespace: string;
} {
  const { connectionOptions: o, namespace } = loadClientConnectConfig();
  return {
    native: o,
    connection: {
      address: o.address,
      tls: o.tls ?? undefined,
      apiKey: o.apiKey,
      metadata: o.metadata,
      connectTimeout: '10s',
    },
    namespace: namespace ?? 'default',
  };
}

/** A client connected with the environment's settings. */
export async function connectClient(): Promise<Client> {
  const { connection, namespace } = temporalSettings();
  return new Client({ connection: await Connection.connect(connection), namespace });
}
