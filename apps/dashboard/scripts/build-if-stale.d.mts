export function sourceHash(): string;
export function ensureDashboardBuilt(opts?: { force?: boolean; quiet?: boolean }): Promise<{ built: boolean; dir: string }>;
