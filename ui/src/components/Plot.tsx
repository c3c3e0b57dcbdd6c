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
      scales: { x: { time: xTime } },
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
      if (box.current && plot.current) plot.current.setSize({ width: box.current.clientWidth, height });
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

  return <div className="plot" ref={box} data-testid={testId} />;
}
