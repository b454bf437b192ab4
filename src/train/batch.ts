// A batch as the data pipeline hands it to the training loop: NCHW float images and their labels, on the host.
export interface HostBatch {
  readonly images: Float32Array;
  readonly labels: Int32Array;
  readonly shape: readonly [number, number, number, number];
}
