// fetch() (undici's global dispatcher, built into Node): the parent fetches
// first, keeping a pooled keep-alive connection, then children and prefork
// workers fetch. cowfork resets the global dispatcher in each child, so every
// fetch is answered.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Upstream, inChildren, preforkAnswers, upstream } from './support';

let up: Upstream;
beforeAll(async () => {
  up = await upstream();
});
afterAll(() => up.close());

const text = async (url: string): Promise<string> => (await fetch(url)).text();

describe('fetch, after the parent used it', () => {
  it('map children, pool and isolation: 4 of 4 answered (the fetch-pool reproducer)', async () => {
    expect(await text(`${up.base}/parent`)).toBe('/parent');
    const items = [0, 1, 2, 3];
    const want = items.map((i) => `/f${i}`);
    expect(await inChildren(items, (i) => text(`${up.base}/f${i}`), 3000)).toEqual({ pool: want, isolation: want });
  });

  it('prefork workers: every request answered, each worker\'s first one included', async () => {
    expect(await text(`${up.base}/parent`)).toBe('/parent');
    const answers = await preforkAnswers((p) => text(`${up.base}/w${p}`));
    expect(answers.map((a) => a.value)).toEqual(answers.map((_, i) => `/w/r${i}`));
    expect(answers.some((a) => a.served === 1)).toBe(true);
  });

  it('the parent keeps fetching afterwards', async () => {
    expect(await text(`${up.base}/parent`)).toBe('/parent');
    await inChildren([0], (i) => text(`${up.base}/f${i}`), 3000);
    expect(await text(`${up.base}/again`)).toBe('/again');
  });
});
