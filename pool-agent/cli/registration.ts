/**
 * What `pool-agent register` promises the edge and `pool-agent serve` has to keep: the address
 * the agent listens on (taken from the registered endpoint) and the span (model and layers) the
 * edge routes to it. Plain functions; the commands read and write the files.
 *
 * @example
 * const listen = listenAddressFor('http://203.0.113.7:7000', { host: '127.0.0.1', port: 0 }, { localAddresses: ['203.0.113.7'] });
 * // { host: '203.0.113.7', port: 7000, notes: ['serve binds 203.0.113.7 ...'], warnings: [] }
 * const refusal = spanRefusal(state.registration, { modelId, layers: [1, 3] });
 */
import { networkInterfaces } from 'node:os';
import type { AgentState } from '../config.js';

export type Registration = NonNullable<AgentState['registration']>;

/** The port an endpoint URL names explicitly (`http://h:80` included), else undefined. */
export function explicitPort(endpoint: string): number | undefined {
  const m = /^[a-z][a-z0-9+.-]*:\/\/(?:[^@/?#]*@)?(?:\[[^\]]*\]|[^:/?#]*):(\d+)(?:[/?#]|$)/i.exec(endpoint);
  return m ? Number(m[1]) : undefined;
}

/** The host of an endpoint URL, IPv6 without its brackets. */
export function endpointHost(endpoint: string): string {
  return new URL(endpoint).hostname.replace(/^\[(.*)\]$/, '$1');
}

export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host);
}

const isWildcard = (host: string) => host === '0.0.0.0' || host === '::';

/** This host's interface addresses (what `serve` can bind). */
export function localAddresses(): string[] {
  return Object.values(networkInterfaces()).flatMap((list) => (list ?? []).map((i) => i.address));
}

export interface ListenAddress {
  host: string;
  /** 0: any free port (the endpoint names none and none was set). */
  port: number;
  /** What changed in pool-agent.json, for the owner. */
  notes: string[];
  /** Why the edge may not reach the agent at its endpoint. */
  warnings: string[];
}

/**
 * Where `serve` should listen so that the edge and other agents reach it at `endpoint`.
 * Port: `opts.port` (register --port: a proxy or port forward maps the endpoint to it), else the
 * port the endpoint names, else the configured one. Host: the endpoint's host when it is an
 * address of this machine and the agent would otherwise bind loopback only (binding exactly
 * there opens no more than the owner announced); a wildcard or other host the owner set is kept.
 * `registeredPort`: the port the previous registration recorded.
 */
export function listenAddressFor(
  endpoint: string,
  current: { host: string; port: number },
  opts: { port?: number; localAddresses?: string[]; registeredPort?: number } = {},
): ListenAddress {
  const notes: string[] = [];
  const warnings: string[] = [];
  const named = explicitPort(endpoint);
  let port = current.port;
  if (opts.port !== undefined) port = opts.port;
  else if (named !== undefined) {
    // Said only when the owner set the port (a re-registration on a new port moves its own).
    if (current.port !== 0 && current.port !== named && current.port !== opts.registeredPort) notes.push(`serve listens on port ${named}, the endpoint's (was ${current.port}); pass register --port ${current.port} when a proxy or port forward maps the endpoint to it`);
    port = named;
  } else if (port === 0) {
    warnings.push(`the endpoint ${endpoint} names no port and none is set: serve would listen on any free port; pass register --port N with the port your proxy forwards to`);
  }
  const host = endpointHost(endpoint);
  let bind = current.host;
  if (!isLoopback(host) && isLoopback(current.host)) {
    if ((opts.localAddresses ?? []).includes(host)) {
      bind = host;
      notes.push(`serve binds ${host}, the endpoint's address on this host`);
    } else {
      warnings.push(
        `serve binds ${current.host}, which other machines cannot reach at ${endpoint} unless a proxy on this host forwards to ${current.host}:${port || 'PORT'}; ` +
          'set "host": "0.0.0.0" in pool-agent.json (or serve --host) to listen on every interface',
      );
    }
  }
  return { host: bind, port, notes, warnings };
}

/**
 * Why `serve` must not start with this span, or undefined when it is the registered one (or no
 * registration was recorded). The edge routes by the registered span: every ticket it signs for
 * this agent names the registered model and layers, and the agent refuses a ticket for a span it
 * does not serve (`wrong_hop`, `wrong_model`). An agent serving another span would fail every job
 * routed to it (a failover, a slower answer for each user) while looking alive in heartbeats, so
 * the mismatch is refused before anything loads, not warned about.
 */
export function spanRefusal(registration: Registration | undefined, served: { modelId: string; layers: readonly [number, number] }): string | undefined {
  if (!registration) return undefined;
  const [a, b] = registration.layers;
  const again = `run \`pool-agent register --layers ${served.layers[0]}:${served.layers[1]} ...\` again first, or serve the registered span`;
  if (served.layers[0] !== a || served.layers[1] !== b) {
    return `layers ${served.layers[0]}:${served.layers[1]} differ from the span registered at the edge (${a}:${b}): the edge routes jobs for ${a}:${b} to this agent, so every one would fail; ${again} (--layers ${a}:${b})`;
  }
  if (served.modelId !== registration.modelId) {
    return `the model in this folder (${served.modelId}) is not the one registered at the edge (${registration.modelId}): every job routed to this agent would fail; run \`pool-agent register\` again with this model first, or serve the registered one`;
  }
  return undefined;
}

/** A warning when `serve` listens on another port than the one registered for its endpoint. */
export function portWarning(registration: Registration | undefined, boundPort: number): string | undefined {
  if (registration?.port === undefined || registration.port === boundPort) return undefined;
  return (
    `listening on port ${boundPort}, not ${registration.port} where register put this agent for its endpoint ${registration.endpoint}: ` +
    'the edge and other agents reach it only if a proxy or port forward maps the endpoint here; serve without --port, or register again (--endpoint, --port)'
  );
}
