import type { Command } from 'commander';

/**
 * What every command's declaration shares. Declarations (this folder) import nothing but commander's types and the
 * light modules: `--help` must not load a command's code, which only its action imports (see main.ts).
 */

/** One style of defaults in --help: `(default: X)` at the end of the description, whoever applies the default. */
export function withDefault(text: string, value: string | number): string {
  return `${text} (default: ${value})`;
}

/** --url and --api-key, worded the same for every command that talks to the gateway. */
export function connectionFlags(cmd: Command): Command {
  return cmd
    .option('--url <url>', withDefault('gateway URL; else PHOTOENHANCE_URL, else the running `npm start`', 'http://127.0.0.1:8080'))
    .option('--api-key <key>', 'API key, sent as a Bearer token (env PHOTOENHANCE_API_KEY)');
}

/** An Examples section after the options. */
export function examples(cmd: Command, lines: Array<[command: string, what: string]>): Command {
  const width = Math.max(...lines.map(([c]) => c.length));
  return cmd.addHelpText('after', `\nExamples:\n${lines.map(([c, what]) => `  $ ${c.padEnd(width)}  # ${what}`).join('\n')}\n`);
}
