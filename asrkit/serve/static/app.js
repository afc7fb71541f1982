// asrkit's page: the microphone streamed to /v1/stream as PCM16 at the audio device's own rate (the
// server resamples it to the model's with soxr, the resampler `asrkit transcribe` uses, so that the
// page and the CLI hear the same samples; a browser's own resampler differs from it), partial and
// final results shown as they come; a dropped file sent to /v1/transcribe. Plain JS, nothing
// fetched from elsewhere.
"use strict";

const $ = (id) => document.getElementById(id);
const BLOCK_MS = 100;  // audio sent per message
let live = null;  // {context, source, node, socket, stream, pending}

function setStatus(text, error = false) {
  $("status").textContent = text;
  $("status").className = error ? "error" : "muted";
}

function addFinal(message) {
  if (!message.text) return;
  const item = document.createElement("li");
  const text = document.createElement("span");
  text.className = "text";
  text.textContent = message.text;
  item.appendChild(text);
  const time = document.createElement("span");
  time.className = "time";
  time.textContent = `${message.start.toFixed(2)}–${message.end.toFixed(2)} s`;
  item.appendChild(time);
  $("finals").appendChild(item);
}

function toPcm16(floats) {  // the inverse of the browser's own 16-bit reading: k / 32768 below zero, k / 32767 above
  const out = new Int16Array(floats.length);
  for (let i = 0; i < floats.length; i++) {
    const f = floats[i];
    out[i] = f < 0 ? Math.max(-32768, Math.round(f * 32768)) : Math.min(32767, Math.round(f * 32767));
  }
  return out;
}

async function start() {
  const context = new AudioContext();  // the device's rate: no resampling in the browser
  await context.audioWorklet.addModule("/static/worklet.js");  // ready before the microphone opens:
  const stream = await navigator.mediaDevices.getUserMedia({  // its first words are not lost
    audio: {channelCount: 1, echoCancellation: false, noiseSuppression: false, autoGainControl: false}});
  const source = context.createMediaStreamSource(stream);
  const node = new AudioWorkletNode(context, "capture");
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const key = $("key").value.trim();
  const protocols = ["asrkit"];  // a browser cannot set Authorization on a socket: the key rides as a subprotocol
  if (key) protocols.push("asrkit.key." + btoa(unescape(encodeURIComponent(key))).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, ""));
  const socket = new WebSocket(`${scheme}//${location.host}/v1/stream`, protocols);
  socket.binaryType = "arraybuffer";
  live = {context, source, node, socket, stream, pending: [], pendingLength: 0};
  const block = Math.round(context.sampleRate * BLOCK_MS / 1000);
  socket.onopen = () => {
    socket.send(JSON.stringify({type: "start", sample_rate: context.sampleRate}));
    setStatus(`listening (${context.sampleRate} Hz)`);
    if (live.pendingLength >= block) flush();  // what was heard while the socket opened
  };
  socket.onmessage = (event) => {
    const message = JSON.parse(event.data);
    if (message.type === "partial") $("partial").textContent = message.text;
    else if (message.type === "final") { $("partial").textContent = ""; addFinal(message); }
    else if (message.type === "error") setStatus(message.message, true);
  };
  socket.onclose = (event) => {
    if (event.code !== 1000 && event.code !== 1005) setStatus(`closed (${event.code})`, true);
    else setStatus("idle");
    stopAudio();
    document.body.dataset.state = "done";
  };
  node.port.onmessage = (event) => {  // kept while the socket opens, sent once it is open
    if (socket.readyState > WebSocket.OPEN) return;
    live.pending.push(event.data);
    live.pendingLength += event.data.length;
    if (live.pendingLength >= block && socket.readyState === WebSocket.OPEN) flush();
  };
  source.connect(node);
  $("mic").textContent = "Stop";
  $("mic").classList.add("on");
  document.body.dataset.state = "live";
}

function flush() {
  if (!live || !live.pendingLength) return;
  const joined = new Float32Array(live.pendingLength);
  let at = 0;
  for (const piece of live.pending) { joined.set(piece, at); at += piece.length; }
  live.pending = [];
  live.pendingLength = 0;
  if (live.socket.readyState === WebSocket.OPEN) live.socket.send(toPcm16(joined).buffer);
}

function stopAudio() {
  if (!live) return;
  live.source.disconnect();
  live.stream.getTracks().forEach((track) => track.stop());
  live.context.close();
  $("mic").textContent = "Start microphone";
  $("mic").classList.remove("on");
}

function stop() {
  if (!live) return;
  flush();
  if (live.socket.readyState === WebSocket.OPEN) live.socket.send(JSON.stringify({type: "end"}));
  stopAudio();
  setStatus("finishing…");
}

$("mic").addEventListener("click", () => {
  if (live && live.socket.readyState <= WebSocket.OPEN && $("mic").classList.contains("on")) stop();
  else start().catch((e) => setStatus(`microphone: ${e.message}`, true));
});

async function sendFile(file) {
  $("file-result").textContent = `transcribing ${file.name}…`;
  $("file-result").className = "file-result muted";
  const form = new FormData();
  form.append("file", file);
  const key = $("key").value.trim();
  const answer = await fetch("/v1/transcribe", {method: "POST", body: form,
                                                headers: key ? {Authorization: `Bearer ${key}`} : {}});
  const data = await answer.json();
  if (!answer.ok) {
    $("file-result").textContent = data.error ? data.error.message : `error ${answer.status}`;
    $("file-result").className = "file-result error";
    return;
  }
  $("file-result").textContent = data.text || "(nothing recognised)";
  $("file-result").className = "file-result";
  $("file-result").title = `${file.name}: ${data.duration} s of audio in ${data.seconds} s`;
}

const drop = $("drop");
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => {
  e.preventDefault();
  drop.classList.remove("over");
  if (e.dataTransfer.files.length) sendFile(e.dataTransfer.files[0]);
});
$("file").addEventListener("change", (e) => { if (e.target.files.length) sendFile(e.target.files[0]); });

$("key").value = sessionStorage.getItem("asrkit-key") || "";
$("key").addEventListener("change", () => sessionStorage.setItem("asrkit-key", $("key").value.trim()));

const headers = () => ($("key").value.trim() ? {Authorization: `Bearer ${$("key").value.trim()}`} : {});
fetch("/v1/models", {headers: headers()}).then((r) => r.json()).then((data) => {
  const model = data.data && data.data[0];
  $("model").textContent = model ? `${model.id}${model.streaming ? "" : " (files only: not a streaming model)"}` : "";
  if (model && !model.streaming) $("mic").disabled = true;
  document.body.dataset.ready = "yes";
}).catch(() => { $("model").textContent = ""; });
