// node:http with its default keep-alive agent: the parent makes a request
// first (http.globalAgent keeps the socket), then children and prefork
// workers make theirs through the same agent. cowfork resets the agent in
// each child, so every request is answered; none waits on the parent's socket.
import http from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../helpers';
import { MODES, type Upstream, getDefault, inChildren, outcome, preforkAnswers, upstream } from './support';
import { map } from '../../src/index';

let up: Upstream;
beforeAll(async () => {
  up = await upstream();
});
afterAll(() => up.close());

/** A request from the parent, which leaves a keep-alive socket in http.globalAgent. */
async function parentUsesAgent(): Promise<void> {
  expect(await getDefault(`${up.base}/parent`)).toBe('/parent');
  await waitFor(() => Object.keys(http.globalAgent.freeSockets).length > 0, 2000);
}

describe('http.get with the default agent, after the parent used it', () => {
  it('map children, pool and isolation: 4 of 4 answered (the http-agent reproducer)', async () => {
    await parentUsesAgent();
    const items = [0, 1, 2, 3];
    const want = items.map((i) => `/c${i}`);
    expect(await inChildren(items, (i) => getDefault(`${up.base}/c${i}`), 3000)).toEqual({ pool: want, isolation: want });
  });

  it('a child makes several requests in a row through the agent', async () => {
    await parentUsesAgent();
    const out = await map(
      [0, 1],
      async (i) => {
        const bodies = [];
        for (let k = 0; k < 3; k++) bodies.push(await getDefault(`${up.base}/c${i}-${k}`));
        return bodies;
      },
      { ...MODES.pool, timeout: 5000, settle: true },
    );
    expect(out.map(outcome)).toEqual([0, 1].map((i) => [0, 1, 2].map((k) => `/c${i}-${k}`)));
  });

  it('prefork workers: every request answered, each worker\'s first one included', async () => {
    await parentUsesAgent();
    const answers = await preforkAnswers((p) => getDefault(`${up.base}/w${p}`));
    for (const a of answers) expect(a).toEqual({ pid: expect.any(Number), served: a.served, value: expect.stringMatching(/^\/w\/r\d$/) });
    expect(answers.map((a) => a.value)).toEqual(answers.map((_, i) => `/w/r${i}`));
    expect(answers.some((a) => a.served === 1)).toBe(true);
  });

  it('the parent keeps using its agent afterwards', async () => {
    await parentUsesAgent();
    await inChildren([0], (i) => getDefault(`${up.base}/c${i}`), 3000);
    expect(await getDefault(`${up.base}/again`)).toBe('/again');
  });
});
