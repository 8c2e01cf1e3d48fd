// The run page's Output card: the run's messages as they arrive, read from
// /runs/{id}/stream (Server-Sent Events). After a dropped connection the browser
// reconnects by itself and resumes after the last message (Last-Event-ID); the `end`
// event closes the stream once the run is final. The card of a finished run stays
// hidden unless the run published something.
(function () {
  var card = document.getElementById("output-card");
  if (!card || !window.EventSource) return;
  var rows = card.querySelector("tbody");
  var state = document.getElementById("output-state");
  var count = document.getElementById("output-count");
  var source = new EventSource(card.dataset.stream);
  source.onopen = function () { state.textContent = "live"; };
  source.onmessage = function (e) {
    var m = JSON.parse(e.data);
    var tr = document.createElement("tr");
    tr.dataset.id = m.id;
    tr.dataset.topic = m.topic;
    var cells = [m.at.slice(0, 23).replace("T", " "), m.topic, m.attempt, JSON.stringify(m.data)];
    cells.forEach(function (value, i) {
      var td = document.createElement("td");
      td.textContent = value;
      if (i === 3) td.className = "mono";
      tr.appendChild(td);
    });
    rows.appendChild(tr);
    count.textContent = rows.rows.length;
    card.hidden = false;
    document.getElementById("output-empty").hidden = true;
  };
  source.addEventListener("end", function (e) {
    source.close();
    state.textContent = "ended: the run is " + JSON.parse(e.data).status;
  });
  source.onerror = function () {
    if (source.readyState !== EventSource.CLOSED) state.textContent = "reconnecting";
  };
})();
