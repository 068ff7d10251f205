// bcdi-stream 3D view: a reconstruction's isosurface, vortex lines (red: winding +1, blue: -1), domain-boundary
// planes, lab axes and a scale bar on a plain 2D canvas (no library, no network). Drag to rotate, wheel to
// zoom, double-click to reset. The scene is streamer.analysis.views.scene_3d's: nm in the lab frame (z, y, x).
// The live page and the HTML report both use this file. After each drawing the canvas says what it drew
// (data-lines, data-windings, data-line-colours read back from its own pixels, data-faces) for tests.
"use strict";

const BcdiView3D = (() => {
  const WINDING_RGB = { 1: [255, 64, 64], "-1": [64, 176, 255] };
  const DEFAULT = { yaw: -0.6, pitch: 0.45, zoom: 1 };

  function array(packed) { // {"shape", "f32": base64 little-endian float32} or a nested list
    if (!packed) return { shape: [0, 3], data: new Float32Array(0) };
    if (Array.isArray(packed)) return { shape: [packed.length, 3], data: Float32Array.from(packed.flat()) };
    const s = atob(packed.f32), bytes = new Uint8Array(s.length);
    for (let i = 0; i < s.length; i++) bytes[i] = s.charCodeAt(i);
    return { shape: packed.shape, data: new Float32Array(bytes.buffer) };
  }

  function niceLength(nm) { // the largest 1, 2, 5 x 10^k not above nm
    const p = Math.pow(10, Math.floor(Math.log10(nm))), m = nm / p;
    return (m >= 5 ? 5 : m >= 2 ? 2 : 1) * p;
  }

  function create(canvas) {
    const ctx = canvas.getContext("2d");
    let scene = null, verts = null, faces = null, view = { ...DEFAULT }, centre = [0, 0, 0], radius = 1;

    // lab (z, y, x) nm -> camera: yaw about z, then pitch about the screen's horizontal; screen up is z at pitch 0
    function project(p) {
      const z = p[0] - centre[0], y = p[1] - centre[1], x = p[2] - centre[2];
      const cy = Math.cos(view.yaw), sy = Math.sin(view.yaw), cp = Math.cos(view.pitch), sp = Math.sin(view.pitch);
      const u = x * cy - y * sy, w = x * sy + y * cy; // w: into the screen before the pitch
      const v = z * cp + w * sp, depth = w * cp - z * sp;
      const s = view.zoom * 0.42 * Math.min(canvas.width, canvas.height) / radius;
      return [canvas.width / 2 + s * u, canvas.height / 2 - s * v, depth];
    }
    const scale = () => view.zoom * 0.42 * Math.min(canvas.width, canvas.height) / radius;

    function setScene(next) {
      scene = next;
      if (!scene) { draw(); return; }
      const v = array(scene.mesh && scene.mesh.vertices), f = array(scene.mesh && scene.mesh.faces);
      verts = v.data; faces = f.data;
      const ext = scene.extent_nm || [[-1, 1], [-1, 1], [-1, 1]];
      centre = ext.map(([a, b]) => (a + b) / 2);
      radius = Math.max(1, 0.5 * Math.hypot(...ext.map(([a, b]) => b - a)));
      draw();
    }

    function drawSurface() {
      const n = verts.length / 3, px = new Float32Array(3 * n);
      for (let i = 0; i < n; i++) {
        const q = project([verts[3 * i], verts[3 * i + 1], verts[3 * i + 2]]);
        px[3 * i] = q[0]; px[3 * i + 1] = q[1]; px[3 * i + 2] = q[2];
      }
      const m = faces.length / 3, order = new Uint32Array(m), depth = new Float32Array(m);
      for (let k = 0; k < m; k++) {
        order[k] = k;
        depth[k] = px[3 * faces[3 * k] + 2] + px[3 * faces[3 * k + 1] + 2] + px[3 * faces[3 * k + 2] + 2];
      }
      order.sort((a, b) => depth[b] - depth[a]); // far first
      for (const k of order) {
        const a = 3 * faces[3 * k], b = 3 * faces[3 * k + 1], c = 3 * faces[3 * k + 2];
        // screen-space normal: its z part (towards the viewer) shades the face
        const ux = px[b] - px[a], uy = px[b + 1] - px[a + 1], uz = px[b + 2] - px[a + 2];
        const vx = px[c] - px[a], vy = px[c + 1] - px[a + 1], vz = px[c + 2] - px[a + 2];
        const nx = uy * vz - uz * vy, ny = uz * vx - ux * vz, nz = ux * vy - uy * vx;
        const lit = 0.35 + 0.65 * Math.abs(nz) / (Math.hypot(nx, ny, nz) || 1);
        ctx.fillStyle = `rgba(${Math.round(120 * lit + 40)},${Math.round(150 * lit + 45)},${Math.round(170 * lit + 50)},0.35)`;
        ctx.beginPath(); ctx.moveTo(px[a], px[a + 1]); ctx.lineTo(px[b], px[b + 1]); ctx.lineTo(px[c], px[c + 1]);
        ctx.closePath(); ctx.fill();
      }
    }

    function drawPlanes() {
      for (const plane of scene.planes || []) {
        const q = plane.corners_nm.map(project);
        ctx.fillStyle = "rgba(255,210,63,0.22)"; ctx.strokeStyle = "#ffd23f"; ctx.lineWidth = 1.5;
        ctx.setLineDash([6, 4]);
        ctx.beginPath(); q.forEach(([x, y], i) => (i ? ctx.lineTo(x, y) : ctx.moveTo(x, y))); ctx.closePath();
        ctx.fill(); ctx.stroke(); ctx.setLineDash([]);
      }
    }

    function drawLines() {
      const mids = [];
      for (const line of scene.lines || []) {
        const q = line.points_nm.map(project), rgb = WINDING_RGB[line.winding > 0 ? 1 : "-1"];
        for (const [style, width] of [["#000", 7], [`rgb(${rgb})`, 4]]) { // a dark halo: visible on any face
          ctx.strokeStyle = style; ctx.lineWidth = width; ctx.lineCap = "round"; ctx.lineJoin = "round";
          ctx.beginPath(); q.forEach(([x, y], i) => (i ? ctx.lineTo(x, y) : ctx.moveTo(x, y))); ctx.stroke();
        }
        const i = Math.floor((q.length - 1) / 2), j = Math.min(q.length - 1, i + 1);
        mids.push([(q[i][0] + q[j][0]) / 2, (q[i][1] + q[j][1]) / 2]);
      }
      return mids;
    }

    function drawAxes() { // the lab triad, bottom left, foreshortened as the axes are: z along q, y the rocking axis
      const o = [46, canvas.height - 46], L = 30, a = project(centre), full = scale() * radius / 4;
      ctx.font = "11px DejaVu Sans, sans-serif"; ctx.lineWidth = 2;
      for (const [name, dir, colour] of [["x", [0, 0, 1], "#c8c8c8"], ["y", [0, 1, 0], "#9bd07c"], ["z (q)", [1, 0, 0], "#e0a030"]]) {
        const b = project(centre.map((c, k) => c + dir[k] * radius / 4));
        const tip = [o[0] + L * (b[0] - a[0]) / full, o[1] + L * (b[1] - a[1]) / full];
        ctx.strokeStyle = colour; ctx.fillStyle = colour;
        ctx.beginPath(); ctx.moveTo(o[0], o[1]); ctx.lineTo(tip[0], tip[1]); ctx.stroke();
        ctx.fillText(name, tip[0] + (tip[0] >= o[0] ? 3 : -10), tip[1] + (tip[1] >= o[1] ? 11 : -3));
      }
    }

    function drawScaleBar() {
      const s = scale(), nm = niceLength(0.25 * canvas.width / s), w = nm * s, x0 = canvas.width - 20 - w, y0 = canvas.height - 22;
      ctx.strokeStyle = "#dde3ea"; ctx.fillStyle = "#dde3ea"; ctx.lineWidth = 3;
      ctx.beginPath(); ctx.moveTo(x0, y0); ctx.lineTo(x0 + w, y0); ctx.stroke();
      ctx.font = "11px DejaVu Sans, sans-serif"; ctx.textAlign = "center"; ctx.fillText(`${nm} nm`, x0 + w / 2, y0 - 6);
      ctx.textAlign = "start";
      canvas.dataset.scaleBarNm = String(nm);
    }

    function readBack(mids) { // the colour actually painted at each line's middle: red, blue or other
      return mids.map(([x, y]) => {
        const d = ctx.getImageData(Math.round(x) - 1, Math.round(y) - 1, 3, 3).data;
        let best = "other", score = 0;
        for (let i = 0; i < d.length; i += 4) {
          const [r, g, b] = [d[i], d[i + 1], d[i + 2]];
          if (r - b > score && r > 180 && g < 120) { best = "red"; score = r - b; }
          if (b - r > score && b > 180 && r < 120) { best = "blue"; score = b - r; }
        }
        return best;
      });
    }

    function draw() {
      ctx.clearRect(0, 0, canvas.width, canvas.height);
      ctx.fillStyle = "#0f1216"; ctx.fillRect(0, 0, canvas.width, canvas.height);
      if (!scene) { canvas.dataset.lines = "0"; canvas.dataset.faces = "0"; return; }
      drawSurface();
      drawPlanes();
      const mids = drawLines();
      drawAxes();
      drawScaleBar();
      canvas.dataset.faces = String(faces.length / 3);
      canvas.dataset.lines = String((scene.lines || []).length);
      canvas.dataset.planes = String((scene.planes || []).length);
      canvas.dataset.windings = (scene.lines || []).map((l) => (l.winding > 0 ? "+1" : "-1")).join(",");
      canvas.dataset.lineColours = readBack(mids).join(",");
    }

    let drag = null;
    canvas.addEventListener("mousedown", (e) => { drag = [e.clientX, e.clientY]; });
    window.addEventListener("mouseup", () => { drag = null; });
    window.addEventListener("mousemove", (e) => {
      if (!drag) return;
      view.yaw += (e.clientX - drag[0]) * 0.01;
      view.pitch = Math.max(-1.55, Math.min(1.55, view.pitch + (e.clientY - drag[1]) * 0.01));
      drag = [e.clientX, e.clientY];
      draw();
    });
    canvas.addEventListener("wheel", (e) => {
      e.preventDefault();
      view.zoom = Math.max(0.3, Math.min(8, view.zoom * (e.deltaY < 0 ? 1.15 : 1 / 1.15)));
      draw();
    }, { passive: false });
    canvas.addEventListener("dblclick", () => { view = { ...DEFAULT }; draw(); });

    return {
      setScene, draw,
      look(name) { // "reset", or along an axis: "z" (down q, onto the layers), "y", "x"
        view = name === "z" ? { yaw: 0, pitch: Math.PI / 2 - 1e-3, zoom: view.zoom }
          : name === "y" ? { yaw: 0, pitch: 0, zoom: view.zoom }
          : name === "x" ? { yaw: Math.PI / 2, pitch: 0, zoom: view.zoom } : { ...DEFAULT };
        draw();
      },
    };
  }

  return { create, array };
})();
