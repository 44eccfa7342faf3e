/** Runs once before every suite: builds the shared tiny model so suites never race to write it. */
import { ensureTestModel } from './model.js';

export default async function setup(): Promise<void> {
  await ensureTestModel();
}
