import { readFileSync } from 'node:fs';
import { Command, CommanderError } from 'commander';
import { EXIT } from './exit-codes.js';
import { paint } from './colour.js';
import { registerEnhance } from './specs/enhance.js';
import { registerStatus } from './specs/status.js';
import { registerDoctor } from './specs/doctor.js';
import { registerStart } from './specs/start.js';
import { registerBatch } from './specs/batch.js';
import { registerWatch } from './specs/watch.js';
// The role commands' register functions import commander types and their own small module only.
import { registerGateway } from './commands/gateway.js';
import { registerWorker } from './commands/worker.js';

/**
 * `photoenhance`: each command is declared in specs/<name>.ts (`register<Name>(program)`: options, help, examples) and
 * implemented in commands/<name>.ts, which its action imports only when it runs, so `--help` and `--version` load
 * commander and nothing else (the contracts package alone costs about a second). A new command's register function
 * must keep that rule: no value imports of command code.
 * Commands throw; this file alone turns errors into messages and exit codes (exit.ts).
 */
export function buildProgram(): Command {
  const program = new Command('photoenhance')
    .description('PhotoEnhance Gateway: start the service, enhance photos, inspect jobs, check the host.')
    .version(cliVersion(), '-V, --version', 'print the version of photoenhance')
    // Program options only before the command: `enhance --version 1.3` reaches enhance (which names --model-version).
    .enablePositionalOptions()
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride();
  registerStart(program);
  registerGateway(program);
  registerWorker(program);
  registerEnhance(program);
  registerStatus(program);
  registerDoctor(program);
  registerBatch(program);
  registerWatch(program);
  for (const cmd of program.commands) cmd.exitOverride();
  return program;
}

function cliVersion(): string {
  return (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version;
}

export async function main(argv: string[] = process.argv): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
    return typeof process.exitCode === 'number' ? process.exitCode : EXIT.OK;
  } catch (err) {
    if (err instanceof CommanderError) {
      // help and version exit 0; every other commander error is a usage error (already printed by commander).
      return err.exitCode === 0 ? EXIT.OK : EXIT.USAGE;
    }
    const { explain } = await import('./exit.js');
    const { message, exitCode } = explain(err);
    const c = paint(process.stderr);
    // Only the leading word is coloured, so the text stays the same for anyone matching it.
    process.stderr.write(`${message.replace(/^(error|hint)\b/gm, (w) => c(w === 'error' ? 'red' : 'cyan', w))}\n`);
    return exitCode;
  }
}

process.exit(await main());
