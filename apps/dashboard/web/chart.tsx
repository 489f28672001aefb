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

/**
 * Width of the y axis: its widest label as drawn, plus the ticks and the gap (a fixed width cut "12 m 30 s" off on the
 * left). uPlot calls this again while the layout settles, and the labels can change between those calls (the x axis's
 * height changes the plot's, and so the y ticks): later calls never shrink the axis, so it settles and fits every
 * label it was asked about.
 */
function yAxisSize(u: uPlot, values: string[] | null, axisIdx: number, cycle: number): number {
  const axis = u.axes[axisIdx]!;
  const current = (axis as { _size?: number })._size;
  const dpr = globalThis.devicePixelRatio || 1;
  const widthOf = (labels: readonly unknown[], font: string | undefined): number => {
    u.ctx.font = font ?? u.ctx.font;
    const lines = labels.flatMap((v) => String(v).split('\n'));
    return Math.max(0, ...lines.map((l) => u.ctx.measureText(l).width)) / dpr;
  };
  let size = (axis.ticks?.size ?? 10) + (axis.gap ?? 5) + 4;
  if (values?.length) size += widthOf(values, (axis as { font?: [string] }).font?.[0]);
  // The x axis's labels are centred on their ticks: one on the plot's left edge reaches half its width into this axis
  // (the x axis is sized first, so its labels for this cycle are known). Narrow y labels ("0", "5") left too little.
  const x = u.axes[0] as { _values?: unknown[] | null; font?: [string] };
  if (x?._values?.length) size = Math.max(size, widthOf(x._values, x.font?.[0]) / 2 + 2);
  const wanted = Math.ceil(size);
  return cycle > 1 && current ? Math.max(current, wanted) : wanted;
}

/** A small time chart (uPlot): x in epoch seconds, one array per series; resizes with its box. */
export function TimeChart(props: {
  title: string;
  series: SeriesDef[];
  data: [number[], ...Array<Array<number | null>>];
  height?: number;
  yFormat?: (v: number) => string;
  testId?: string;
}) {
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
      // Dashed series (the p95s) get dashed legend markers, so p50 and p95 of one colour are told apart there too.
      legend: { show: true, markers: { dash: (_u: uPlot, i: number) => (props.series[i - 1]?.dash ? 'dashed' : 'solid') } },
      cursor: { drag: { x: false, y: false } },
      // Room on the right for the last time label, which is centred on its tick (it was cut in half at the edge).
      padding: [8, 24, 0, 0],
      scales: { x: { time: true }, y: { range: (_u, min, max) => [Math.min(0, min), max > 0 ? max * 1.1 : 1] } },
      axes: [
        { stroke: '#94a3b8', grid: { stroke: '#1e293b' }, ticks: { stroke: '#334155' } },
        {
          stroke: '#94a3b8',
          grid: { stroke: '#1e293b' },
          ticks: { stroke: '#334155' },
          size: yAxisSize,
          values: (_u, vals) => vals.map((v) => fmt(v)),
        },
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
