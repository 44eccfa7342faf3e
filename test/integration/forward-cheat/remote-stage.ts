/**
 * Stands in for pool-agent/server/remote-stage.ts inside a `pool-agent serve` process started with
 * `forward-cheat/preload.mjs` (see hooks.mjs): the same module, except that, when
 * LAYERNET_TEST_FORWARD_CHEAT is set, every step from `fromStep` on goes to the next hop with its
 * activations scaled by 1 + `scale`. The agent attests (and keeps for disclosure) the bytes its
 * span computed; the stage hashes and signs the bytes it actually sends (`senderSig`), as an honest
 * stage does. So this is a sender that provably sends other bytes than it attested.
 */
import { RemoteStage as HonestStage, type HiddenActivation, type StepAnswer, type StepChunk } from '../../../pool-agent/server/remote-stage.js';
import type { SignedAttestation } from '../../../protocol/attestation.js';

export * from '../../../pool-agent/server/remote-stage.js';

/** Environment variable read here: JSON `{ "fromStep": number, "scale": number }`. */
export const FORWARD_CHEAT_ENV = 'LAYERNET_TEST_FORWARD_CHEAT';

interface ForwardCheat {
  fromStep: number;
  scale: number;
}

function parseCheat(text: string | undefined): ForwardCheat | null {
  if (!text) return null;
  const c = JSON.parse(text) as Partial<ForwardCheat>;
  if (typeof c.fromStep !== 'number' || typeof c.scale !== 'number' || !(c.scale !== 0)) throw new Error(`not a forward cheat: ${text}`);
  return { fromStep: c.fromStep, scale: c.scale };
}

const cheat = parseCheat(process.env[FORWARD_CHEAT_ENV]);

/** A copy of the activations with every value scaled (the span's own output is left as attested). */
function altered(hidden: HiddenActivation, step: number): HiddenActivation {
  if (!cheat || step < cheat.fromStep) return hidden;
  if (!(hidden.data instanceof Float32Array)) throw new Error('the forward cheat handles float32 models');
  const data = new Float32Array(hidden.data.length);
  for (let i = 0; i < data.length; i++) data[i] = hidden.data[i]! * (1 + cheat.scale);
  return { data, seqLen: hidden.seqLen };
}

export class RemoteStage extends HonestStage {
  override forward(hidden: HiddenActivation, steps: [number, number], chunk: StepChunk, opening: boolean): Promise<StepAnswer | null> {
    return super.forward(altered(hidden, steps[0]), steps, chunk, opening);
  }

  override forwardThenSeal(hidden: HiddenActivation, steps: [number, number], chunkFrom: number, attest: () => Promise<{ signed: SignedAttestation; hash: string }>): Promise<StepAnswer & { later: Promise<SignedAttestation[]> }> {
    return super.forwardThenSeal(altered(hidden, steps[0]), steps, chunkFrom, attest);
  }
}
