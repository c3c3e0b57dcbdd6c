// uPlot wrapper: one chart, created once, data swapped in place, resized with its box.
import { useEffect, useRef } from "react";
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";

export interface PlotSeries {
  label: string;
  stroke: string;
  points?: boolean; // markers only (fills on the mid chart)
  width?: number;
}

interface Props {
  title?: string;
  series: PlotSeries[];
  data: (number | null)[][]; // [x, y1, y2, ...]
  height?: number;
  xTime?: boolean;
  testId?: string;
}

export function Plot({ title, series, data, height = 220, xTime = true, testId }: Props) {
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  const key = series.map((s) => s.label).join("|");

  useEffect(() => {
    if (!box.current) return;
    const opts: uPlot.Options = {
      title,
      width: box.current.clientWidth || 600,
      height,
      // a single point (or one instant) gets a minute around it, not uPlot's default span
      scales: {
        x: {
          time: xTime,
          range: (_u, min, max) => (min === max ? [min - 30, max + 30] : [min, max]),
        },
      },
      legend: { live: true },
      series: [
        {},
        ...series.map((s) =>
          s.points
            ? { label: s.label, stroke: s.stroke, fill: s.stroke, width: 0, points: { show: true, size: 9, fill: s.stroke } }
            : { label: s.label, stroke: s.stroke, width: s.width ?? 1.5, points: { show: false }, spanGaps: true },
        ),
      ],
      axes: [{ stroke: "#9aa4b2" }, { stroke: "#9aa4b2", size: 60 }],
    };
    const empty = [[], ...series.map(() => [])] as uPlot.AlignedData;
    plot.current = new uPlot(opts, empty, box.current);
    const ro = new ResizeObserver(() => {
      // hidden while empty (width 0): keep the last size until it is shown again
      if (box.current && plot.current && box.current.clientWidth > 0) {
        plot.current.setSize({ width: box.current.clientWidth, height });
      }
    });
    ro.observe(box.current);
    return () => {
      ro.disconnect();
      plot.current?.destroy();
      plot.current = null;
    };
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [key, height, xTime, title]);

  useEffect(() => {
    if (plot.current && data.length === series.length + 1) {
      plot.current.setData(data as uPlot.AlignedData);
    }
  }, [data, series.length]);

  // no points yet: an empty state instead of axes over a made-up range (uPlot would draw
  // an empty time axis spanning decades)
  // (also when every series is null: an empty book's mid over one instant gets an x axis
  // spanning years)
  const empty =
    !data.length || !data[0] || data[0].length === 0 || data.slice(1).every((ys) => ys.every((y) => y === null || y === undefined));
  return (
    <div className={empty ? "plot plot-empty-box" : "plot"} data-testid={testId} data-empty={empty ? "1" : "0"}>
      {empty && (
        <div className="plot-empty" data-testid={testId ? `${testId}-empty` : undefined}>
          {title ? `${title}: ` : ""}no data yet
        </div>
      )}
      <div ref={box} style={empty ? { display: "none" } : undefined} />
    </div>
  );
}
