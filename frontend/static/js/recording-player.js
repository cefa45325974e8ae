// Replays a console recording (asciicast v2) with asciinema-player from npm:
// seek on its progress bar, a speed, and idle gaps cut to a limit. Both are
// options of the player's creation, so changing one re-creates the player
// at the same moment, playing if it was.
(function () {
  "use strict";
  const root = document.getElementById("player");
  if (!root || !window.AsciinemaPlayer) return;
  const screen = root.querySelector(".recording-screen");
  const form = root.querySelector(".recording-tools");
  let player = null;
  let playing = false;

  function create(startAt, autoPlay) {
    const idle = form.elements.idle.value;
    const options = {
      speed: Number(form.elements.speed.value),
      autoPlay: false,
      fit: "width",
      controls: true,
      terminalFontSize: "small",
      preload: true,
    };
    if (idle) options.idleTimeLimit = Number(idle);
    player = window.AsciinemaPlayer.create(root.dataset.src, screen, options);
    player.addEventListener("play", function () { playing = true; });
    player.addEventListener("playing", function () { playing = true; });
    player.addEventListener("pause", function () { playing = false; });
    player.addEventListener("ended", function () { playing = false; });
    window.kernellabPlayer = player; // the browser tests drive it
    // startAt only applies once playing: seek, so a paused replay keeps its frame.
    if (startAt > 0) {
      player.seek(startAt).then(function () { if (autoPlay) player.play(); });
    } else if (autoPlay) {
      player.play();
    }
  }

  form.addEventListener("change", async function () {
    let at = 0;
    const wasPlaying = playing;
    if (player) {
      at = (await player.getCurrentTime()) || 0;
      player.dispose();
      screen.replaceChildren();
    }
    playing = false;
    create(at, wasPlaying);
  });
  form.addEventListener("submit", function (e) { e.preventDefault(); });
  create(0, false);
})();
