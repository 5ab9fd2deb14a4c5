// `node -r cowfork/register app.js` (or `--import cowfork/register`): if the
// process lacks --single-threaded, re-execute it in place with the flag (and
// --v8-pool-size=1, see launcher.ts) before the app runs. A no-op when the
// flag is already there.
import { isForkSafe } from './fork';
import { reexecWithFlag } from './launcher';

if (!isForkSafe()) {
  const script = process.argv[1];
  if (script === undefined) {
    throw new Error('cowfork/register: no script to re-execute (use `node -r cowfork/register app.js`)');
  }
  reexecWithFlag(process.execArgv, script, process.argv.slice(2));
}
