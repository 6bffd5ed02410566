/* pytest-gold campaign report: the failures table, the grid's heatmap, auto-refresh.
 *
 * The data comes from <script type="application/json"> elements and reaches the page
 * only as text (textContent), never as markup. window.goldReport.ready turns true once
 * the charts are drawn and the tables built.
 */
(function () {
  "use strict";
  var MAX_ROWS = 200; // failure rows in the document at once; the search narrows them
  var WAIT_MS = 25;
  var WAIT_TRIES = 2400; // a minute for Bokeh to draw a large page
  var report = (window.goldReport = { ready: false, problems: [] });
  var STORE = "pytest-gold-report:" + location.pathname;

  function readData(id) {
    var element = document.getElementById(id);
    return element ? JSON.parse(element.textContent) : null;
  }

  function saved() {
    try {
      return JSON.parse(sessionStorage.getItem(STORE) || "{}") || {};
    } catch (error) {
      return {}; // storage may be off for file: pages
    }
  }

  function save(key, value) {
    try {
      var all = saved();
      all[key] = value;
      sessionStorage.setItem(STORE, JSON.stringify(all));
    } catch (error) {
      /* the page works without it */
    }
  }

  function element(tag, text, className) {
    var node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (className) node.className = className;
    return node;
  }

  // -- failures ------------------------------------------------------------------

  function failures() {
    var data = readData("gold-failures-data") || { rows: [], colors: {} };
    var rows = data.rows;
    var body = document.querySelector("#failure-table tbody");
    var input = document.getElementById("failure-search");
    var counter = document.getElementById("failure-count");
    if (!body || !input) return;
    var haystacks = rows.map(function (row) {
      return [row.nodeid, row.where, row.kind, row.message]
        .join("\n")
        .toLowerCase();
    });

    function toggle(tr, row) {
      var next = tr.nextElementSibling;
      if (next && next.classList.contains("details")) {
        next.remove();
        tr.setAttribute("aria-expanded", "false");
        return;
      }
      var details = element("tr", null, "details");
      var cell = element("td");
      cell.colSpan = 4;
      cell.appendChild(element("h3", "Failure"));
      cell.appendChild(element("pre", row.longrepr || row.message));
      if (row.output) {
        cell.appendChild(element("h3", "Captured output"));
        cell.appendChild(element("pre", row.output));
      }
      details.appendChild(cell);
      tr.parentNode.insertBefore(details, tr.nextSibling);
      tr.setAttribute("aria-expanded", "true");
    }

    function line(row) {
      var tr = element("tr", null, "failure");
      tr.tabIndex = 0;
      tr.setAttribute("aria-expanded", "false");
      tr.appendChild(element("td", row.nodeid, "nodeid"));
      tr.appendChild(element("td", row.where));
      var kind = element("td");
      var badge = element("span", row.kind, "kind");
      badge.style.background = data.colors[row.kind] || "#555";
      kind.appendChild(badge);
      tr.appendChild(kind);
      tr.appendChild(element("td", row.message, "message"));
      tr.addEventListener("click", function () {
        toggle(tr, row);
      });
      tr.addEventListener("keydown", function (event) {
        if (event.key === "Enter" || event.key === " ") {
          event.preventDefault();
          toggle(tr, row);
        }
      });
      return tr;
    }

    function show() {
      var words = input.value.toLowerCase().split(/\s+/).filter(Boolean);
      var matching = 0;
      var fragment = document.createDocumentFragment();
      for (var i = 0; i < rows.length; i++) {
        var text = haystacks[i];
        var hit = words.every(function (word) {
          return text.indexOf(word) >= 0;
        });
        if (!hit) continue;
        matching++;
        if (matching <= MAX_ROWS) fragment.appendChild(line(rows[i]));
      }
      if (matching > MAX_ROWS) {
        var more = element("tr", null, "more");
        var cell = element("td", matching - MAX_ROWS + " more: narrow the search to see them");
        cell.colSpan = 4;
        more.appendChild(cell);
        fragment.appendChild(more);
      }
      body.textContent = "";
      body.appendChild(fragment);
      counter.textContent = words.length
        ? matching + " of " + rows.length + " shown"
        : rows.length + " listed";
      save("search", input.value);
    }

    var timer = null;
    input.addEventListener("input", function () {
      clearTimeout(timer);
      timer = setTimeout(show, rows.length > 5000 ? 150 : 0);
    });
    input.value = saved().search || "";
    show();
  }

  // -- the grid ------------------------------------------------------------------

  function grid(doc) {
    var data = readData("gold-grid-data");
    var controls = document.getElementById("grid-controls");
    if (!data || !data.functions.length || !controls) return;
    var source = doc.get_model_by_name("grid-source");
    var figure = doc.get_model_by_name("grid-figure");
    var xaxis = doc.get_model_by_name("grid-xaxis");
    var yaxis = doc.get_model_by_name("grid-yaxis");
    var pick = saved().grid || {};
    var chosen = { f: Math.min(pick.f || 0, data.functions.length - 1) };

    function select(name, options, value, onChange) {
      var wrapper = element("label", name);
      var box = element("select");
      box.name = name;
      options.forEach(function (option, index) {
        var item = element("option", option[1]);
        item.value = String(option[0] === undefined ? index : option[0]);
        box.appendChild(item);
      });
      box.value = String(value);
      box.addEventListener("change", function () {
        onChange(parseInt(box.value, 10));
      });
      wrapper.appendChild(box);
      controls.appendChild(wrapper);
      return box;
    }

    function build(reset) {
      var f = data.functions[chosen.f];
      var args = f.args.map(function (arg, index) {
        return [index, arg];
      });
      if (reset || chosen.x === undefined) {
        chosen.x = f["default"][0];
        chosen.y = f["default"].length > 1 ? f["default"][1] : -1;
        chosen.filters = f.args.map(function () {
          return -1;
        });
      }
      controls.textContent = "";
      if (data.functions.length > 1) {
        select("test", data.functions.map(function (fn, index) {
          return [index, fn.name];
        }), chosen.f, function (value) {
          chosen.f = value;
          build(true);
        });
      }
      select("x", args, chosen.x, function (value) {
        if (value === chosen.y) chosen.y = chosen.x;
        chosen.x = value;
        build(false);
      });
      select("y", [[-1, "(none)"]].concat(args), chosen.y, function (value) {
        if (value === chosen.x) chosen.x = chosen.y >= 0 ? chosen.y : chosen.x;
        chosen.y = value;
        if (chosen.x === chosen.y) chosen.y = -1;
        build(false);
      });
      f.args.forEach(function (arg, index) {
        if (index === chosen.x || index === chosen.y) return;
        var values = [[-1, "(all)"]].concat(f.values[index].map(function (value, i) {
          return [i, value];
        }));
        select(arg, values, chosen.filters[index], function (value) {
          chosen.filters[index] = value;
          draw();
        });
      });
      draw();
    }

    function draw() {
      var f = data.functions[chosen.f];
      var xi = chosen.x;
      var yi = chosen.y;
      var cells = new Map();
      var last = f.args.length;
      f.cases.forEach(function (row) {
        for (var j = 0; j < last; j++) {
          if (j === xi || j === yi) continue; // an axis shows all its values
          if (chosen.filters[j] >= 0 && row[j] !== chosen.filters[j]) return;
        }
        var y = yi >= 0 ? row[yi] : 0;
        var key = row[xi] + "," + y;
        var cell = cells.get(key);
        if (!cell) {
          cell = { x: row[xi], y: y, worst: data.kinds.length, counts: {} };
          cells.set(key, cell);
        }
        var kind = row[last];
        cell.worst = Math.min(cell.worst, kind);
        cell.counts[kind] = (cell.counts[kind] || 0) + 1;
      });
      var xValues = f.values[xi];
      var yValues = yi >= 0 ? f.values[yi] : ["all"];
      var columns = { x: [], y: [], color: [], kind: [], where: [], counts: [] };
      cells.forEach(function (cell) {
        columns.x.push(xValues[cell.x]);
        columns.y.push(yValues[cell.y]);
        columns.color.push(data.colors[cell.worst]);
        columns.kind.push(data.kinds[cell.worst]);
        var where = f.args[xi] + "=" + xValues[cell.x];
        if (yi >= 0) where += ", " + f.args[yi] + "=" + yValues[cell.y];
        columns.where.push(where);
        columns.counts.push(
          Object.keys(cell.counts)
            .map(Number)
            .sort(function (a, b) {
              return a - b;
            })
            .map(function (kind) {
              return cell.counts[kind] + " " + data.kinds[kind];
            })
            .join(", ")
        );
      });
      figure.x_range.factors = xValues.slice();
      figure.y_range.factors = yValues.slice();
      xaxis.axis_label = f.args[xi];
      yaxis.axis_label = yi >= 0 ? f.args[yi] : "";
      source.data = columns;
      save("grid", chosen);
    }

    if (pick.x !== undefined && pick.f === chosen.f) {
      chosen.x = pick.x;
      chosen.y = pick.y;
      chosen.filters = pick.filters;
    }
    build(false);
  }

  // -- start-up and refresh ------------------------------------------------------

  function whenCharts(then) {
    var tries = 0;
    (function wait() {
      var bokeh = window.Bokeh;
      if (bokeh && bokeh.documents && bokeh.documents.length) {
        then(bokeh.documents[0]);
      } else if (tries++ < WAIT_TRIES) {
        setTimeout(wait, WAIT_MS);
      } else {
        report.problems.push("the charts did not load");
        finish();
      }
    })();
  }

  function whenDrawn(then) {
    (function wait() {
      var idle = window.Bokeh.documents.every(function (doc) {
        return doc.is_idle;
      });
      if (idle) {
        requestAnimationFrame(function () {
          requestAnimationFrame(then);
        });
      } else {
        setTimeout(wait, WAIT_MS);
      }
    })();
  }

  function mark(name) {
    if (window.performance && performance.mark) performance.mark(name);
  }

  function finish() {
    mark("gold-ready");
    var scroll = saved().scroll;
    if (scroll) {
      window.scrollTo(0, scroll);
      save("scroll", 0);
    }
    report.ready = true;
    document.documentElement.setAttribute("data-ready", "true");
  }

  function autoRefresh() {
    var seconds = parseFloat(document.documentElement.getAttribute("data-refresh") || "");
    if (!(seconds > 0)) return;
    var box = document.getElementById("auto-refresh");
    if (box) {
      box.checked = saved().autoRefresh !== false;
      box.addEventListener("change", function () {
        save("autoRefresh", box.checked);
      });
    }
    setInterval(function () {
      if (!box || box.checked) {
        save("scroll", window.scrollY);
        location.reload();
      }
    }, seconds * 1000);
  }

  function start() {
    try {
      failures();
      mark("gold-failures-built");
    } catch (error) {
      report.problems.push("failures: " + error);
    }
    autoRefresh();
    whenCharts(function (doc) {
      mark("gold-charts-loaded");
      try {
        grid(doc);
        mark("gold-grid-built");
      } catch (error) {
        report.problems.push("grid: " + error);
      }
      whenDrawn(finish);
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
