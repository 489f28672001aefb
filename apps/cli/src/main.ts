import { Command, CommanderError } from 'commander';
import { EXIT, explain } from './exit.js';
import { registerEnhance } from './commands/enhance.js';
import { registerStatus } from './commands/status.js';
import { registerDoctor } from './commands/doctor.js';
import { registerStart } from './commands/start.js';
import { registerBatch } from './commands/batch.js';
import { registerWatch } from './commands/watch.js';
import { registerGateway } from './commands/gateway.js';
import { registerWorker } from './commands/worker.js';

/**
 * `photoenhance`: one file per command under commands/, each exporting `register<Name>(program)`.
 * Commands throw; this file alone turns errors into messages and exit codes (exit.ts).
 */
export function buildProgram(): Command {
  const program = new Command('photoenhance')
    .description('PhotoEnhance Gateway: start the service, enhance photos, inspect jobs, check the host.')
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
    const { message, exitCode } = explain(err);
    process.stderr.write(`${message}\n`);
    return exitCode;
  }
}

process.exit(await main());
