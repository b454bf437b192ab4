// The live training chart: loss (left axis) and accuracy (right axis, 0-100 %) per step, drawn with uPlot.
import uPlot from 'uplot';

export class TrainingChart {
  readonly steps: number[] = [];
  readonly losses: number[] = [];
  readonly accuracies: number[] = [];
  private readonly plot: uPlot;

  constructor(container: HTMLElement) {
    this.plot = new uPlot(
      {
        width: Math.max(320, container.clientWidth || 640),
        height: 220,
        legend: { show: true },
        cursor: { drag: { x: false, y: false } },
        scales: { x: { time: false }, acc: { range: [0, 100] } },
        axes: [
          { label: 'step', stroke: '#667085', grid: { stroke: '#eef0f3' } },
          { label: 'loss', stroke: '#c2410c', grid: { stroke: '#eef0f3' } },
          { scale: 'acc', side: 1, label: 'accuracy %', stroke: '#15803d', grid: { show: false } },
        ],
        series: [
          { label: 'step' },
          { label: 'loss', stroke: '#ea580c', width: 2, points: { show: false }, value: (_u, v) => (v == null ? '–' : v.toFixed(4)) },
          { label: 'accuracy', scale: 'acc', stroke: '#16a34a', width: 2, points: { show: false }, value: (_u, v) => (v == null ? '–' : `${v.toFixed(0)}%`) },
        ],
      },
      [[], [], []],
      container,
    );
    new ResizeObserver(() => this.plot.setSize({ width: Math.max(320, container.clientWidth), height: 220 })).observe(container);
  }

  add(step: number, loss: number, accuracy: number): void {
    this.steps.push(step);
    this.losses.push(loss);
    this.accuracies.push(accuracy);
    this.plot.setData([this.steps, this.losses, this.accuracies.map((a) => a * 100)]);
  }

  reset(): void {
    this.steps.length = 0;
    this.losses.length = 0;
    this.accuracies.length = 0;
    this.plot.setData([[], [], []]);
  }
}
