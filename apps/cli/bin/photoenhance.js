#!/usr/bin/env node
// Plain JS so it runs without a build: register tsx against the repository's tsconfig (whatever the cwd), then load the CLI.
import { fileURLToPath } from 'node:url';
import { register } from 'tsx/esm/api';

register({ tsconfig: fileURLToPath(new URL('../../../tsconfig.json', import.meta.url)) });
await import('../src/main.ts');
