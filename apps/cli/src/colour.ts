/**
 * Colour for a terminal, never for a pipe or a file: on when the stream is a TTY, NO_COLOR is unset or empty
 * (https://no-color.org) and TERM is not `dumb`; FORCE_COLOR=1 turns it on anyway (tests under a pseudo-terminal use
 * NO_COLOR to check the opposite).
 */
export function colourEnabled(stream: { isTTY?: boolean } = process.stdout, env: NodeJS.ProcessEnv = process.env): boolean {
  if (env.NO_COLOR !== undefined && env.NO_COLOR !== '') return false;
  if (env.FORCE_COLOR !== undefined && env.FORCE_COLOR !== '' && env.FORCE_COLOR !== '0') return true;
  return stream.isTTY === true && env.TERM !== 'dumb';
}

const CODES = { red: 31, green: 32, yellow: 33, blue: 34, magenta: 35, cyan: 36, grey: 90, bold: 1, dim: 2 } as const;
export type Hue = keyof typeof CODES;

export interface Paint {
  (hue: Hue, text: string): string;
  readonly enabled: boolean;
  /** A job, batch or host state word in the colour of what it means. */
  state(word: string): string;
}

const STATE_HUES: Record<string, Hue> = {
  completed: 'green',
  done: 'green',
  admitting: 'green',
  active: 'cyan',
  running: 'cyan',
  busy: 'cyan',
  queued: 'yellow',
  waiting: 'yellow',
  delayed: 'yellow',
  prioritized: 'yellow',
  holding: 'yellow',
  paused: 'yellow',
  partial: 'yellow',
  canceled: 'magenta',
  failed: 'red',
  error: 'red',
};

export function paint(stream: { isTTY?: boolean } = process.stdout, env: NodeJS.ProcessEnv = process.env): Paint {
  const enabled = colourEnabled(stream, env);
  const fn = ((hue: Hue, text: string): string => (enabled ? `\x1b[${CODES[hue]}m${text}\x1b[0m` : text)) as Paint;
  Object.defineProperty(fn, 'enabled', { value: enabled });
  fn.state = (word: string): string => {
    const hue = STATE_HUES[word];
    return hue ? fn(hue, word) : word;
  };
  return fn;
}
