/**
 * The pool-agent CLI: what a pool owner types.
 *
 * @example
 * pool-agent init
 * pool-agent model build --preset tiny    # recorded as modelDir in ~/.layernet-agent/pool-agent.json
 * pool-agent bench
 * pool-agent register --edge https://edge.example.com --token $TOKEN --region eu-west --price 0.2 --endpoint http://203.0.113.7:7000
 * pool-agent serve                         # listens on port 7000, the registered span
 */
import { ConfigError } from './config.js';
import { IdentityError } from './identity.js';
import { CliError, processIo, type CliIo } from './cli/args.js';

export const USAGE = `Usage: pool-agent <command> [flags]

Commands:
  init          create the state folder, Ed25519 identity and config file
  hardware      show the GPUs / CPU and memory this host offers, and the usable providers (cpu, cuda)
  model build   build a preset model (tiny, small, 1b) into a folder
  model import  convert a Hugging Face checkpoint folder into one
  bench         measure this host's decode tokens/s for its span
  register      register this agent (pool, model, spans, key) with an edge
  serve         serve the span: job, span and check endpoints

Every command takes --help and --dir: the state folder, else $LAYERNET_AGENT_DIR, else
~/.layernet-agent.`;

/** Runs one CLI invocation; resolves with the exit code (never throws for user errors). */
export async function main(argv: string[], io: CliIo = processIo): Promise<number> {
  const [command, ...rest] = argv;
  try {
    switch (command) {
      case 'init':
        return await (await import('./cli/init.js')).runInit(rest, io);
      case 'hardware':
        return await (await import('./cli/hardware.js')).runHardware(rest, io);
      case 'model':
        return await (await import('./cli/model.js')).runModel(rest, io);
      case 'bench':
        return await (await import('./cli/bench.js')).runBench(rest, io);
      case 'register':
        return await (await import('./cli/register.js')).runRegister(rest, io);
      case 'serve':
        return await (await import('./cli/serve.js')).runServe(rest, io);
      case undefined:
      case '--help':
      case '-h':
      case 'help':
        io.out(USAGE);
        return command === undefined ? 2 : 0;
      default:
        io.err(`unknown command ${JSON.stringify(command)}\n\n${USAGE}`);
        return 2;
    }
  } catch (err) {
    const label = command === 'model' && (rest[0] === 'build' || rest[0] === 'import') ? `model ${rest[0]}` : command;
    if (err instanceof CliError) {
      io.err(`pool-agent ${label}: ${err.message}`);
      return err.exitCode;
    }
    if (err instanceof ConfigError || err instanceof IdentityError || (err instanceof Error && err.name === 'ModelFileError')) {
      io.err(`pool-agent ${label}: ${err.message}`);
      return 1;
    }
    io.err(`pool-agent ${label}: unexpected error: ${(err as Error).stack ?? String(err)}`);
    return 1;
  }
}

const invokedDirectly = process.argv[1] !== undefined && /(pool-agent[\\/](main\.ts|bin\.mjs)|[\\/]pool-agent)$/.test(process.argv[1]);
if (invokedDirectly || (globalThis as { __POOL_AGENT_BIN__?: boolean }).__POOL_AGENT_BIN__) {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (err) => {
      process.stderr.write(String(err) + '\n');
      process.exitCode = 1;
    },
  );
}
