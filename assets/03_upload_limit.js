// Refuse a file over the upload limit in the browser, before it is read or sent (issue 7): a
// 220 MB file used to be read into a base64 string and crash the tab. The limit and the message's
// element come from the wrapper's data-max-bytes / data-msg-id (set in pages/*.py from the server's
// own limits). Listeners run in the capture phase on window, so the upload component never sees a
// refused file; dcc.Upload's max_size is the second line of defence (it drops such files silently).
// A file that is sent but refused on the way (HTTP 413 from the server or a proxy in front of it, a
// server error, a dropped connection) says so in the same element: Dash itself shows nothing then.
// A box with data-accept (file name endings) stops a file of another type the same way, with the
// box's data-type-msg as the reason: dcc.Upload's `accept` only filters the file chooser, and a file
// of another type that is dropped (or picked under "all files") is dropped by react-dropzone unsaid.
(function () {
  var pending = null;  // the upload box whose file is on its way: {msg, names}

  function mb(bytes) { return (bytes / 1048576).toFixed(1) + ' MB'; }
  function listed(names) { return names.slice(0, 3).join(', ') + (names.length > 3 ? ' …' : ''); }

  function check(event, files) {
    var box = event.target && event.target.closest ? event.target.closest('[data-max-bytes]') : null;
    if (!box || !files || !files.length) { return; }
    var limit = Number(box.getAttribute('data-max-bytes'));
    var msg = document.getElementById(box.getAttribute('data-msg-id'));
    var total = 0, names = [];
    for (var i = 0; i < files.length; i++) { total += files[i].size; names.push(files[i].name); }
    var accept = (box.getAttribute('data-accept') || '').split(',').filter(Boolean);
    var wrong = accept.length ? names.filter(function (n) {
      return !accept.some(function (end) { return n.toLowerCase().slice(-end.length) === end; });
    }) : [];
    if (wrong.length) {
      stop(event);  // a function as replacement: a "$&" in a file name stays as it is
      show(msg, (box.getAttribute('data-type-msg') || '{name}: not a file this box takes.')
        .replace('{name}', function () { return listed(wrong); }));
      return;
    }
    if (total <= limit) {
      if (msg) { msg.textContent = ''; msg.style.display = 'none'; }
      pending = {msg: msg, names: names, box: box};
      return;
    }
    stop(event);
    show(msg, listed(names) + ': ' + mb(total) +
      ', more than the ' + mb(limit) + ' allowed per upload. Nothing was sent. Sample the data, or run ' +
      'the command-line tool on the full file.');
  }

  function stop(event) {  // the upload component never sees the file
    event.preventDefault();
    event.stopImmediatePropagation();
    if (event.type === 'change') { event.target.value = ''; }
  }

  function show(msg, text) {
    if (msg) { msg.textContent = text; msg.style.display = 'block'; }
  }

  window.addEventListener('change', function (e) {
    if (e.target && e.target.type === 'file') { check(e, e.target.files); }
  }, true);
  window.addEventListener('drop', function (e) {
    check(e, e.dataTransfer ? e.dataTransfer.files : null);
  }, true);

  function failed(what) {
    if (!pending || !pending.msg) { return; }
    pending.msg.textContent = listed(pending.names) + ': the upload failed (' + what + '). Nothing was ' +
      'stored. Try again; if it fails again, sample the data or run the command-line tool on the full file.';
    pending.msg.style.display = 'block';
    // Let the same file be chosen again: the file input keeps its value (no change event for the same
    // file), and the upload keeps the contents the server never stored (Dash sends no unchanged value).
    var upload = pending.box.firstElementChild, input = pending.box.querySelector('input[type=file]');
    pending = null;
    if (input) { input.value = ''; }
    if (upload && upload.id && window.dash_clientside && window.dash_clientside.set_props) {
      window.dash_clientside.set_props(upload.id, {contents: null, filename: null});
    }
  }

  // An upload callback is the one whose changed property is an upload's `contents` (listed after the
  // file itself in the request body); its failure would otherwise leave the page silent.
  function changesContents(body) {
    var i = body.lastIndexOf('"changedPropIds":[');
    return i !== -1 && body.slice(i, body.indexOf(']', i)).indexOf('.contents"') !== -1;
  }

  var fetch0 = window.fetch;
  window.fetch = function (url, opts) {
    var body = opts && opts.body;
    var upload = pending !== null && typeof body === 'string' &&
      String(url).indexOf('/_dash-update-component') !== -1 && changesContents(body);
    var p = fetch0.apply(this, arguments);
    if (!upload) { return p; }
    return p.then(function (resp) {
      if (!resp.ok && resp.status !== 401) {
        resp.clone().text().then(function (text) {
          failed('the server answered ' + resp.status + (text && text.length < 300 && text.indexOf('<') === -1 ?
            ': ' + text.trim() : ''));
        }, function () { failed('the server answered ' + resp.status); });
      } else { pending = null; }
      return resp;
    }, function (err) {
      failed('the connection was lost');
      throw err;
    });
  };
})();
