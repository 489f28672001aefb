import { useEffect, useRef } from 'preact/hooks';
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';

export interface SeriesDef {
  label: string;
  color: string;
  dash?: number[];
  fill?: string;
  value?: (v: number | null) => string;
}

/** A small time chart (uPlot): x in epoch seconds, one array per series; resizes with its box. */
export function TimeChart(props: { title: string; series: SeriesDef[]; data: [number[], ...Array<Array<number | null>>]; height?: number; yFormat?: (v: number) => string; testId?: string }) {
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  const shape = props.series.map((s) => s.label).join('|');

  useEffect(() => {
    const el = box.current;
    if (!el) return;
    const fmt = props.yFormat ?? ((v: number) => String(v));
    const opts: uPlot.Options = {
      width: Math.max(el.clientWidth, 200),
      height: props.height ?? 160,
      legend: { show: true },
      cursor: { drag: { x: false, y: false } },
      scales: { x: { time: true }, y: { range: (_u, min, max) => [Math.min(0, min), max > 0 ? max * 1.1 : 1] } },
      axes: [
        { stroke: '#94a3b8', grid: { stroke: '#1e293b' }, ticks: { stroke: '#334155' } },
        { stroke: '#94a3b8', grid: { stroke: '#1e293b' }, ticks: { stroke: '#334155' }, size: 64, values: (_u, vals) => vals.map((v) => fmt(v)) },
      ],
      series: [
        {},
        ...props.series.map((s) => ({
          label: s.label,
          stroke: s.color,
          width: 2,
          ...(s.dash ? { dash: s.dash } : {}),
          ...(s.fill ? { fill: s.fill } : {}),
          value: (_u: uPlot, v: number | null) => (v === null ? '–' : (s.value ?? fmt)(v)),
          spanGaps: true,
        })),
      ],
    };
    const u = new uPlot(opts, props.data as uPlot.AlignedData, el);
    plot.current = u;
    const ro = new ResizeObserver(() => u.setSize({ width: Math.max(el.clientWidth, 200), height: props.height ?? 160 }));
    ro.observe(el);
    return () => {
      ro.disconnect();
      u.destroy();
      plot.current = null;
    };
  }, [shape]);

  useEffect(() => {
    plot.current?.setData(props.data as uPlot.AlignedData);
  }, [props.data]);

  return (
    <div class="chart" data-testid={props.testId}>
      <div class="chart-title">{props.title}</div>
      <div ref={box} />
    </div>
  );
}
