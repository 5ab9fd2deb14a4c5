// The `cowfork` command. Subcommands live in a table so each capability can
// add its own without touching the others.
import path from 'node:path';
import { reexecWithFlag } from './launcher';
import { SERVE_USAGE, ServeUsageError, serveCommand } from './prefork/cli';

export interface Subcommand {
  summary: string;
  usage: string;
  run(args: string[]): void | Promise<void>;
}

export class UsageError extends Error {}

export const subcommands: Record<string, Subcommand> = {
  serve: {
    summary: 'run an app module under prefork: a warm master forks the workers (see serve --help)',
    usage: SERVE_USAGE,
    async run(args) {
      try {
        await serveCommand(args);
      } catch (err) {
        if (err instanceof ServeUsageError) throw new UsageError(err.message);
        throw err;
      }
    },
  },
  run: {
    summary: 'run a script with the V8 flag fork() needs (same pid, via execve)',
    usage: 'cowfork run <script.js> [args...]',
    run(args) {
      const [script, ...rest] = args;
      if (script === undefined || script.startsWith('-')) {
        throw new UsageError('cowfork run: missing <script.js>');
      }
      reexecWithFlag(process.execArgv, path.resolve(script), rest);
    },
  },
};

function help(): string {
  const lines = ['Usage: cowfork <command> [options]', '', 'Commands:'];
  for (const [name, c] of Object.entries(subcommands)) lines.push(`  ${name.padEnd(8)} ${c.summary}`, `           ${c.usage}`);
  lines.push('', 'Run `cowfork <command> --help` for a command\'s options.');
  return lines.join('\n');
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...args] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(help() + '\n');
    return name === undefined ? 2 : 0;
  }
  const cmd = subcommands[name];
  if (cmd === undefined) {
    process.stderr.write(`cowfork: unknown command '${name}'\n\n${help()}\n`);
    return 2;
  }
  try {
    await cmd.run(args);
    return 0;
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`${err.message}\nUsage: ${cmd.usage}\n`);
      return 2;
    }
    throw err;
  }
}
