// The run's evaluation preprocessing, as the app does it (timm's eval transform on a Pillow
// image): resize the short side with Pillow's resampling, centre-crop, scale to [0, 1].
//
// The resize is a port of Pillow's Resample.c (ImagingResample, 8 bits per channel): the same
// filters, the same coefficients computed in double precision, the same 22-bit fixed-point
// sums rounded and clipped to 8 bits after the horizontal and again after the vertical pass.
// JavaScript numbers are IEEE doubles like C's, and the integer sums stay below 2^53, so the
// pixels come out as Pillow's, byte for byte (tl_core/export/web_preprocessing.py measures it).
"use strict";

const PRECISION_BITS = 32 - 8 - 2;

// Pillow's filters (support, function) by the name timm stores as "interpolation".
const FILTERS = {
  bicubic: [2.0, (x) => {
    const a = -0.5;
    x = Math.abs(x);
    if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
    if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
    return 0.0;
  }],
  bilinear: [1.0, (x) => { x = Math.abs(x); return x < 1.0 ? 1.0 - x : 0.0; }],
  lanczos: [3.0, (x) => {
    const sinc = (v) => { if (v === 0.0) return 1.0; v *= Math.PI; return Math.sin(v) / v; };
    return -3.0 <= x && x < 3.0 ? sinc(x) * sinc(x / 3) : 0.0;
  }],
  box: [0.5, (x) => (x > -0.5 && x <= 0.5 ? 1.0 : 0.0)],
  hamming: [1.0, (x) => {
    if (x < 0.0) x = -x;
    if (x === 0.0) return 1.0;
    if (x >= 1.0) return 0.0;
    x *= Math.PI;
    return (Math.sin(x) / x) * (0.54 + 0.46 * Math.cos(x));
  }],
};

// Pillow's precompute_coeffs + normalize_coeffs_8bpc: for each output pixel, its first input
// pixel, how many it reads, and their fixed-point weights.
function coefficients(inSize, outSize, filter) {
  const [filterSupport, filterFn] = filter;
  const scale = inSize / outSize;
  const filterScale = Math.max(scale, 1.0);
  const support = filterSupport * filterScale;
  const kSize = Math.ceil(support) * 2 + 1;
  const weights = new Int32Array(outSize * kSize);
  const bounds = new Int32Array(outSize * 2);
  const row = new Float64Array(kSize);
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale;
    const ss = 1.0 / filterScale;
    const xmin = Math.max(Math.trunc(center - support + 0.5), 0);
    const xmax = Math.min(Math.trunc(center + support + 0.5), inSize) - xmin;
    let total = 0.0;
    for (let x = 0; x < xmax; x++) {
      row[x] = filterFn((x + xmin - center + 0.5) * ss);
      total += row[x];
    }
    for (let x = 0; x < kSize; x++) {
      const w = x < xmax && total !== 0.0 ? row[x] / total : x < xmax ? row[x] : 0.0;
      const fixed = w * (1 << PRECISION_BITS);
      weights[xx * kSize + x] = w < 0 ? Math.trunc(-0.5 + fixed) : Math.trunc(0.5 + fixed);
    }
    bounds[xx * 2] = xmin;
    bounds[xx * 2 + 1] = xmax;
  }
  return { kSize, weights, bounds };
}

function clip8(sum) {
  if (sum >= 1 << PRECISION_BITS << 8) return 255;
  if (sum <= 0) return 0;
  return Math.floor(sum / (1 << PRECISION_BITS));
}

// One pass over RGB pixels (3 bytes each) along x (horizontal) or y (vertical).
function resamplePass(src, width, height, outSize, coeffs, horizontal, firstRow) {
  const { kSize, weights, bounds } = coeffs;
  const outW = horizontal ? outSize : width;
  const outH = horizontal ? height : outSize;
  const out = new Uint8Array(outW * outH * 3);
  const half = 1 << (PRECISION_BITS - 1);
  for (let y = 0; y < outH; y++) {
    for (let x = 0; x < outW; x++) {
      const o = horizontal ? x : y;
      const min = bounds[o * 2] - (horizontal ? 0 : firstRow);
      const count = bounds[o * 2 + 1];
      let r = half, g = half, b = half;
      for (let k = 0; k < count; k++) {
        const w = weights[o * kSize + k];
        const i = horizontal ? ((y + firstRow) * width + min + k) * 3 : ((min + k) * width + x) * 3;
        r += src[i] * w;
        g += src[i + 1] * w;
        b += src[i + 2] * w;
      }
      const j = (y * outW + x) * 3;
      out[j] = clip8(r);
      out[j + 1] = clip8(g);
      out[j + 2] = clip8(b);
    }
  }
  return out;
}

// Pillow's Image.resize((outW, outH), filter) of an RGB image: horizontal pass over the rows
// the vertical pass will read, then the vertical pass.
function pillowResize(rgb, width, height, outW, outH, interpolation) {
  const filter = FILTERS[interpolation] || FILTERS.bicubic;
  const horizontal = coefficients(width, outW, filter);
  const vertical = coefficients(height, outH, filter);
  let pixels = rgb, w = width, h = height, firstRow = 0;
  if (outW !== width) {
    firstRow = vertical.bounds[0];
    const lastRow = vertical.bounds[outH * 2 - 2] + vertical.bounds[outH * 2 - 1];
    pixels = resamplePass(rgb, width, lastRow - firstRow, outW, horizontal, true, firstRow);
    w = outW;
    h = lastRow - firstRow;
  }
  if (outH !== height) {
    pixels = resamplePass(pixels, w, h, outH, vertical, false, outW !== width ? firstRow : 0);
  }
  return pixels;
}

// torchvision's Resize(int): the short side becomes `size`, the long side int(size*long/short).
function resizedSize(width, height, size) {
  if (width <= height) return [size, Math.trunc((size * height) / width)];
  return [Math.trunc((size * width) / height), size];
}

// Python's round(): halves go to the even neighbour (torchvision's centre crop uses it).
function roundHalfEven(v) {
  const r = Math.round(v);
  return Math.abs(v % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

// The model's input: resize the short side, centre-crop (zero padding where the image is
// smaller than the crop, as torchvision does), channels first, scaled to [0, 1].
function preprocess(rgb, width, height, prep) {
  const [w, h] = resizedSize(width, height, prep.resize_size);
  const resized = w === width && h === height
    ? rgb : pillowResize(rgb, width, height, w, h, prep.interpolation);
  const size = prep.image_size;
  const top = h >= size ? roundHalfEven((h - size) / 2) : -Math.floor((size - h) / 2);
  const left = w >= size ? roundHalfEven((w - size) / 2) : -Math.floor((size - w) / 2);
  const out = new Float32Array(3 * size * size);
  for (let y = 0; y < size; y++) {
    const sy = y + top;
    if (sy < 0 || sy >= h) continue;
    for (let x = 0; x < size; x++) {
      const sx = x + left;
      if (sx < 0 || sx >= w) continue;
      const i = (sy * w + sx) * 3;
      for (let c = 0; c < 3; c++) out[c * size * size + y * size + x] = resized[i + c] / 255;
    }
  }
  return out;
}

if (typeof module !== "undefined") module.exports = { pillowResize, preprocess, resizedSize };
