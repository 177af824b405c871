// The page's own code: load ONNX Runtime Web and the model from this file, classify the images a
// person picks, show top-k bars, and keep the answers as JSON in #tl-results in the shape of
// `tl-studio predict --json`. Nothing is fetched from anywhere and nothing is sent anywhere.

const config = JSON.parse(document.getElementById("tl-config").textContent);
const $ = (id) => document.getElementById(id);
const results = [];
let session = null;
let ort = null;

function bytesOf(id) {
  const text = atob($(id).textContent.trim());
  const bytes = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i);
  return bytes;
}

async function gunzip(bytes) {
  const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

function status(text, isError = false) {
  $("tl-status").textContent = text;
  $("tl-status").classList.toggle("error", isError);
}

function showFacts() {
  document.title = config.title;
  $("tl-title").textContent = config.title;
  $("tl-accuracy").textContent = config.accuracy;
  $("tl-dates").textContent = config.dates;
  $("tl-card").textContent = config.model_card;
  $("tl-footer").textContent = config.footer;
}

async function loadModel() {
  if (typeof DecompressionStream === "undefined") {
    throw new Error("this browser is too old to open the model (no DecompressionStream); " +
      "use a current Chrome, Edge, Firefox or Safari");
  }
  // Browsers refuse to load scripts and WebAssembly from file:// by URL, so both come from
  // this page's own bytes: the runtime as a blob module, its WebAssembly binary as a buffer.
  const ortUrl = URL.createObjectURL(new Blob([bytesOf("tl-ort-js")], { type: "text/javascript" }));
  ort = await import(ortUrl);
  ort.env.wasm.wasmBinary = (await gunzip(bytesOf("tl-ort-wasm"))).buffer;
  ort.env.wasm.numThreads = 1; // threads need cross-origin isolation, which file:// never has
  ort.env.wasm.proxy = false;
  session = await ort.InferenceSession.create(bytesOf("tl-model"), {
    executionProviders: ["wasm"],
    graphOptimizationLevel: "all",
  });
}

// RGB bytes of an image file, EXIF orientation applied and transparency flattened onto white,
// as the app decodes it; no colour management, as Pillow applies none.
async function decode(file) {
  let bitmap;
  try {
    bitmap = await createImageBitmap(file, {
      imageOrientation: "from-image", colorSpaceConversion: "none", premultiplyAlpha: "none",
    });
  } catch (error) {
    throw new Error("not an image this browser can read");
  }
  const canvas = document.createElement("canvas");
  canvas.width = bitmap.width;
  canvas.height = bitmap.height;
  const context = canvas.getContext("2d", { willReadFrequently: true });
  context.fillStyle = "#fff";
  context.fillRect(0, 0, canvas.width, canvas.height);
  context.drawImage(bitmap, 0, 0);
  bitmap.close();
  const rgba = context.getImageData(0, 0, canvas.width, canvas.height).data;
  const rgb = new Uint8Array(canvas.width * canvas.height * 3);
  for (let i = 0, j = 0; i < rgba.length; i += 4, j += 3) {
    rgb[j] = rgba[i];
    rgb[j + 1] = rgba[i + 1];
    rgb[j + 2] = rgba[i + 2];
  }
  return { rgb, width: canvas.width, height: canvas.height };
}

async function classify(file) {
  const { rgb, width, height } = await decode(file);
  const size = config.preprocessing.image_size;
  const pixels = preprocess(rgb, width, height, config.preprocessing);
  const input = new ort.Tensor("float32", pixels, [1, 3, size, size]);
  const output = await session.run({ [config.input_name]: input });
  // Calibrated probabilities and the "not one of my classes" verdict, as the app gives them.
  const probabilities = Array.from(output[config.probabilities_name].data);
  const unknown = Boolean(Number(output[config.unknown_name].data[0]));
  const predictions = probabilities
    .map((probability, index) => ({ label: config.labels[index], probability }))
    .sort((a, b) => b.probability - a.probability)
    .slice(0, config.top_k);
  return { predictions, unknown };
}

function card(file, predictions, error, unknown) {
  const element = document.createElement("div");
  element.className = "card";
  const image = document.createElement("img");
  image.alt = file.name;
  image.src = URL.createObjectURL(file);
  const body = document.createElement("div");
  body.style.flex = "1";
  body.style.minWidth = "0";
  const name = document.createElement("div");
  name.className = "name";
  name.textContent = file.name;
  body.append(name);
  if (unknown && predictions && predictions.length) {
    const verdict = document.createElement("div");
    verdict.className = "error";
    const closest = predictions[0];
    verdict.textContent = `Not one of my classes (closest: ${closest.label}, ${Math.round(closest.probability * 100)} %)`;
    body.append(verdict);
  }
  if (error) {
    const message = document.createElement("div");
    message.className = "error";
    message.textContent = `Could not classify: ${error}`;
    body.append(message);
  }
  (predictions || []).forEach(({ label, probability }, rank) => {
    const bar = document.createElement("div");
    bar.className = rank === 0 ? "bar top" : "bar";
    const percent = `${(probability * 100).toFixed(1)}%`;
    bar.innerHTML = '<span class="label"></span><span class="track"><span class="fill"></span></span><span class="value"></span>';
    bar.querySelector(".label").textContent = label;
    bar.querySelector(".label").title = label;
    bar.querySelector(".fill").style.width = percent;
    bar.querySelector(".fill").style.display = "block";
    bar.querySelector(".value").textContent = percent;
    body.append(bar);
  });
  element.append(image, body);
  return element;
}

async function classifyAll(files) {
  const images = Array.from(files);
  if (!images.length || !session) return;
  const output = $("tl-results");
  output.dataset.state = "working";
  for (const [index, file] of images.entries()) {
    status(`Classifying ${index + 1} of ${images.length}…`);
    let predictions = null, unknown = false, error = null;
    try {
      ({ predictions, unknown } = await classify(file));
    } catch (problem) {
      error = problem && problem.message ? problem.message : String(problem);
    }
    results.push(error ? { image: file.name, predictions: [], error } : { image: file.name, predictions, unknown });
    $("tl-cards").prepend(card(file, predictions, error, unknown));
  }
  output.textContent = JSON.stringify(results, null, 2);
  output.dataset.count = String(results.length);
  output.dataset.state = "done";
  $("tl-copy").disabled = false;
  const done = images.length === 1 ? "1 image" : `${images.length} images`;
  status(`Classified ${done} on this device. Add more, or copy the results.`);
}

async function copyResults() {
  const text = $("tl-results").textContent;
  try {
    await navigator.clipboard.writeText(text);
  } catch (error) {
    // No clipboard API on a plain-http page (the "share on this network" link): select the
    // text and use the older copy command instead.
    const range = document.createRange();
    range.selectNodeContents($("tl-results"));
    getSelection().removeAllRanges();
    getSelection().addRange(range);
    document.execCommand("copy");
  }
  status("Results copied.");
}

function wireInputs() {
  for (const id of ["tl-files", "tl-camera"]) {
    $(id).disabled = false;
    $(id).addEventListener("change", (event) => classifyAll(event.target.files));
  }
  for (const id of ["tl-pick-label", "tl-camera-label"]) $(id).classList.remove("disabled");
  const drop = $("tl-drop");
  drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    classifyAll(event.dataTransfer.files);
  });
  $("tl-copy").addEventListener("click", copyResults);
}

showFacts();
try {
  await loadModel();
  wireInputs();
  document.body.dataset.state = "ready";
  status("Ready: choose images or take a photo.");
} catch (problem) {
  document.body.dataset.state = "failed";
  status(`The model could not be loaded: ${problem && problem.message ? problem.message : problem}`, true);
}
