import type { ComponentChildren } from 'preact';
import { useState } from 'preact/hooks';

export function Card(props: {
  title: string;
  value: ComponentChildren;
  sub?: ComponentChildren;
  tone?: 'ok' | 'amber' | 'red';
  testId?: string;
}) {
  return (
    <div class={`card ${props.tone ?? ''}`} data-testid={props.testId}>
      <div class="card-title">{props.title}</div>
      <div class="card-value">{props.value}</div>
      {props.sub ? <div class="card-sub">{props.sub}</div> : null}
    </div>
  );
}

export function StatusBadge(props: { status: string }) {
  return <span class={`badge s-${props.status}`}>{props.status}</span>;
}

/** A button that runs an async action, shows it is busy and reports a failure next to itself. */
export function ActionButton(props: {
  label: string;
  run: () => Promise<unknown>;
  kind?: 'danger' | 'primary';
  testId?: string;
  disabled?: boolean;
}) {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | undefined>();
  return (
    <span class="action">
      <button
        type="button"
        class={props.kind ?? ''}
        data-testid={props.testId}
        disabled={busy || props.disabled}
        onClick={async () => {
          setBusy(true);
          setError(undefined);
          try {
            await props.run();
          } catch (err) {
            setError((err as Error).message);
          } finally {
            setBusy(false);
          }
        }}
      >
        {busy ? '…' : props.label}
      </button>
      {error ? (
        <span class="error-text" title={error}>
          {error.slice(0, 80)}
        </span>
      ) : null}
    </span>
  );
}

/** Confirmation that needs the operator to type a word (used before draining a queue). */
export function ConfirmDialog(props: {
  title: string;
  body: ComponentChildren;
  word: string;
  confirmLabel: string;
  onConfirm: () => Promise<unknown>;
  onClose: () => void;
}) {
  const [typed, setTyped] = useState('');
  const [error, setError] = useState<string | undefined>();
  const [busy, setBusy] = useState(false);
  return (
    // A click on the backdrop itself (not one inside the dialog) and Escape anywhere in it close the dialog.
    // biome-ignore lint/a11y/noStaticElementInteractions: the backdrop is no control, only a mouse shortcut for Cancel; keyboard users have Escape and the Cancel button
    <div
      class="modal-backdrop"
      onClick={(e) => {
        if (e.target === e.currentTarget) props.onClose();
      }}
      onKeyDown={(e) => {
        if (e.key === 'Escape') props.onClose();
      }}
    >
      <div class="modal" role="dialog" aria-modal="true" data-testid="confirm-dialog">
        <h3>{props.title}</h3>
        <div>{props.body}</div>
        <label>
          Type <code>{props.word}</code> to confirm
          <input
            value={typed}
            onInput={(e) => setTyped((e.target as HTMLInputElement).value)}
            data-testid="confirm-input"
            // biome-ignore lint/a11y/noAutofocus: the dialog opens to have this word typed; focus belongs in its only field
            autoFocus
          />
        </label>
        {error ? <p class="error-text">{error}</p> : null}
        <div class="modal-actions">
          <button type="button" onClick={props.onClose}>
            Cancel
          </button>
          <button
            type="button"
            class="danger"
            data-testid="confirm-ok"
            disabled={typed !== props.word || busy}
            onClick={async () => {
              setBusy(true);
              try {
                await props.onConfirm();
                props.onClose();
              } catch (err) {
                setError((err as Error).message);
              } finally {
                setBusy(false);
              }
            }}
          >
            {props.confirmLabel}
          </button>
        </div>
      </div>
    </div>
  );
}
