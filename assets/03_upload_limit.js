// Upload boxes (callbacks/uploads.py `limited`): a chosen or dropped file never reaches dcc.Upload
// (which would read it into a base64 string in the tab and send it in one callback). Listeners run
// in the capture phase on window and take the file first:
// - over the box's data-max-bytes, or not one of its data-accept endings: refused here, nothing sent,
//   the reason in the box's message element (data-msg-id);
// - else it goes to the server's /upload route (callbacks/upload_route.py) in chunks of the size the
//   server names (File.slice + fetch, one chunk in flight), with a progress bar (percent, MB/s) under
//   the box. A failed chunk is retried with backoff after asking the server how much it holds; a chunk
//   refused by a proxy's body limit (a 413 that is not ours) is sent again in halves. The upload id is
//   kept in sessionStorage, so choosing the same file again (or after a reload) resumes it.
// - when every byte arrived, the box's store (data-sent-id) gets {upload_id}: the page's callback
//   stages the file on the server and shows the result, as before.
// Errors (the server's refusal, a connection lost after the retries) are said in the message element.
(function () {
  var HEADERS = {'X-Hercules-Upload': '1'};
  var RETRIES = 6, MIN_CHUNK = 256 * 1024;
  var active = {};  // box's sent-id -> the transfer under way (a new file in the same box stops it)
  var pending = null;  // the box whose staging callback is on its way: {msg, names, box}

  function mb(bytes) {
    return bytes >= 1073741824 ? (bytes / 1073741824).toFixed(1) + ' GB' : (bytes / 1048576).toFixed(1) + ' MB';
  }
  function listed(names) { return names.slice(0, 3).join(', ') + (names.length > 3 ? ' …' : ''); }
  function sleep(ms) { return new Promise(function (r) { setTimeout(r, ms); }); }

  function check(event, files) {
    var box = event.target && event.target.closest ? event.target.closest('[data-max-bytes]') : null;
    if (!box || !files || !files.length) { return; }
    var limit = Number(box.getAttribute('data-max-bytes'));
    var msg = document.getElementById(box.getAttribute('data-msg-id'));
    var total = 0, names = [], list = [];
    for (var i = 0; i < files.length; i++) { total += files[i].size; names.push(files[i].name); list.push(files[i]); }
    stop(event);  // the upload component never sees the file
    var accept = (box.getAttribute('data-accept') || '').split(',').filter(Boolean);
    var wrong = accept.length ? names.filter(function (n) {
      return !accept.some(function (end) { return n.toLowerCase().slice(-end.length) === end; });
    }) : [];
    if (wrong.length) {  // a function as replacement: a "$&" in a file name stays as it is
      show(msg, (box.getAttribute('data-type-msg') || '{name}: not a file this box takes.')
        .replace('{name}', function () { return listed(wrong); }));
      return;
    }
    if (total > limit) {
      show(msg, listed(names) + ': ' + mb(total) + ', more than the ' + mb(limit) + ' allowed per upload. ' +
        'Nothing was sent. Sample the data, or run the command-line tool on the full file.');
      return;
    }
    if (msg) { msg.textContent = ''; msg.style.display = 'none'; }
    send(box, msg, list, names, total);
  }

  function stop(event) {
    event.preventDefault();
    event.stopImmediatePropagation();
    if (event.type === 'change') { event.target.value = ''; }  // the same file can be chosen again
  }

  function show(msg, text) {
    if (msg) { msg.textContent = text; msg.style.display = 'block'; }
  }

  function bar(box) {
    var el = box.querySelector('.upload-progress');
    return {
      set: function (done, total, rate, note) {
        if (!el) { return; }
        var pct = total ? Math.floor(100 * done / total) : 100;
        el.style.display = 'block';
        var b = el.querySelector('.progress-bar');
        b.style.width = pct + '%';
        b.setAttribute('aria-valuenow', String(pct));
        b.textContent = pct + '%';
        el.querySelector('.upload-progress-text').textContent = mb(done) + ' of ' + mb(total) +
          (rate ? ' · ' + (rate / 1048576).toFixed(1) + ' MB/s' : '') + (note ? ' · ' + note : '');
      },
      hide: function () { if (el) { el.style.display = 'none'; } }
    };
  }

  function key(purpose, files) {
    return 'hercules-upload:' + purpose + ':' + files.map(function (f) {
      return f.name + '/' + f.size + '/' + f.lastModified;
    }).join('|');
  }

  function errorText(resp) {  // the server's {"error"} or a proxy's short plain text
    return resp.text().then(function (text) {
      try { return JSON.parse(text).error || ''; } catch (e) {
        return text && text.length < 300 && text.indexOf('<') === -1 ? text.trim() : '';
      }
    }, function () { return ''; });
  }

  function Failure(text, resumable) { this.text = text; this.resumable = resumable; }

  function refused(resp) {  // the server's own refusal (JSON) is said as it is; anything else with its status
    var ours = (resp.headers.get('Content-Type') || '').indexOf('application/json') !== -1;
    return errorText(resp).then(function (text) {
      var f = new Failure('the server answered ' + resp.status + (text ? ': ' + text : ''), false);
      f.plain = ours && text ? text : null;
      throw f;
    });
  }

  function post(url, body, type) {
    var headers = Object.assign({}, HEADERS);
    if (type) { headers['Content-Type'] = type; }
    return fetch(url, {method: 'POST', body: body, headers: headers, credentials: 'same-origin', cache: 'no-store'});
  }

  function status(id) {
    return fetch('/upload/' + id, {credentials: 'same-origin', cache: 'no-store'}).then(function (r) {
      return r.ok ? r.json() : null;
    });
  }

  // An upload id to resume (same box, same files, not yet staged), else a new one from the server.
  function open(purpose, files, names, storeKey) {
    var known = sessionStorage.getItem(storeKey);
    var fresh = function () {
      return post('/upload', JSON.stringify({purpose: purpose, names: names,
        sizes: files.map(function (f) { return f.size; })}), 'application/json').then(function (resp) {
        if (!resp.ok) { return refused(resp); }
        return resp.json().then(function (doc) {
          sessionStorage.setItem(storeKey, doc.upload_id);
          return doc;
        });
      });
    };
    if (!known) { return fresh(); }
    return status(known).then(function (st) {
      if (st && !st.staged) { return {upload_id: known, received: st.received, chunk_bytes: 8 * 1048576}; }
      sessionStorage.removeItem(storeKey);
      return fresh();
    }, fresh);
  }

  function send(box, msg, files, names, total) {
    var sentId = box.getAttribute('data-sent-id'), purpose = box.getAttribute('data-purpose') || 'data';
    var storeKey = key(purpose, files), progress = bar(box);
    var job = {cancelled: false};
    if (active[sentId]) { active[sentId].cancelled = true; }
    active[sentId] = job;
    var t0 = performance.now(), base = 0, done = 0, id = null, chunk = 8 * 1048576;
    progress.set(0, total, 0, 'starting');

    function tick(note) {
      var secs = (performance.now() - t0) / 1000;
      progress.set(done, total, secs > 0.2 ? (done - base) / secs : 0, note);
    }

    function offsets(received) {
      done = received.reduce(function (a, b) { return a + b; }, 0);
      return received.slice();
    }

    function one(i, at, tries) {  // send file i from offset `at`; resolves when the file is complete
      if (job.cancelled) { return Promise.reject(new Failure('replaced by another file', false)); }
      var f = files[i];
      if (at >= f.size) { return Promise.resolve(); }
      var end = Math.min(at + chunk, f.size);
      return post('/upload/' + id + '/chunk?file=' + i + '&offset=' + at, f.slice(at, end),
        'application/octet-stream').then(function (resp) {
        if (resp.ok) {
          return resp.json().then(function (doc) {
            done += doc.received - at;
            tick();
            return one(i, doc.received, 0);
          });
        }
        if (resp.status === 409) {  // the server holds another offset: go on from there
          return resp.json().then(function (doc) {
            var got = offsets(doc.received || []);
            return one(i, got[i] || 0, tries + 1);
          });
        }
        var ours = (resp.headers.get('Content-Type') || '').indexOf('application/json') !== -1;
        if (resp.status === 413 && !ours && end - at > MIN_CHUNK) {  // a proxy's body limit: smaller chunks
          chunk = Math.max(MIN_CHUNK, Math.floor((end - at) / 2));
          return one(i, at, tries);
        }
        if (resp.status >= 500 && resp.status !== 507) { throw new Error('server ' + resp.status); }
        return refused(resp);
      }).catch(function (err) {
        if (err instanceof Failure) { throw err; }
        if (tries >= RETRIES) {
          throw new Failure('the connection was lost after ' + RETRIES + ' tries, at ' +
            Math.floor(100 * done / total) + '%; choose the same file again to resume where it stopped', true);
        }
        tick('connection lost, retrying');
        return sleep(Math.min(500 * Math.pow(2, tries), 16000)).then(function () {
          return status(id);
        }).then(function (st) {
          var got = st ? offsets(st.received) : null;
          return one(i, got ? got[i] : at, tries + 1);
        }, function () { return one(i, at, tries + 1); });
      });
    }

    open(purpose, files, names, storeKey).then(function (doc) {
      id = doc.upload_id;
      chunk = doc.chunk_bytes || chunk;
      var got = offsets(doc.received || files.map(function () { return 0; }));
      base = done;
      tick(done ? 'resuming' : '');
      var chain = Promise.resolve();
      files.forEach(function (f, i) { chain = chain.then(function () { return one(i, got[i] || 0, 0); }); });
      return chain;
    }).then(function () {
      if (job.cancelled) { return; }
      delete active[sentId];
      sessionStorage.removeItem(storeKey);
      var secs = (performance.now() - t0) / 1000;
      progress.set(total, total, secs > 0 ? (total - base) / secs : 0, 'sent in ' + secs.toFixed(1) + ' s');
      pending = {msg: msg, names: names, box: box};
      window.dash_clientside.set_props(sentId, {data: {upload_id: id}});
    }).catch(function (err) {
      if (job.cancelled) { return; }
      delete active[sentId];
      if (!(err instanceof Failure) || !err.resumable) { sessionStorage.removeItem(storeKey); }
      progress.hide();
      if (err instanceof Failure && err.plain) { show(msg, err.plain); return; }
      var what = err instanceof Failure ? err.text : 'the connection was lost';
      show(msg, listed(names) + ': the upload failed (' + what + ').' + (err && err.resumable ? '' :
        ' Nothing was stored. Try again; if it fails again, sample the data or run the command-line tool ' +
        'on the full file.'));
    });
  }

  window.addEventListener('change', function (e) {
    if (e.target && e.target.type === 'file') { check(e, e.target.files); }
  }, true);
  window.addEventListener('drop', function (e) {
    check(e, e.dataTransfer ? e.dataTransfer.files : null);
  }, true);

  // The staging callback (its input is a box's store, "<upload>-sent.data") failing on the way
  // (a proxy's timeout, a server error) would otherwise leave the page silent.
  function stagesUpload(body) {
    var i = body.lastIndexOf('"changedPropIds":[');
    return i !== -1 && body.slice(i, body.indexOf(']', i)).indexOf('-sent.data"') !== -1;
  }

  var fetch0 = window.fetch;
  window.fetch = function (url, opts) {
    var body = opts && opts.body;
    var watched = pending !== null && typeof body === 'string' &&
      String(url).indexOf('/_dash-update-component') !== -1 && stagesUpload(body);
    var p = fetch0.apply(this, arguments);
    if (!watched) { return p; }
    var mine = pending;
    pending = null;
    return p.then(function (resp) {
      if (!resp.ok && resp.status !== 401) {
        errorText(resp.clone()).then(function (text) {
          show(mine.msg, listed(mine.names) + ': the file arrived but could not be checked (the server answered ' +
            resp.status + (text ? ': ' + text : '') + '). Try again.');
        });
      }
      return resp;
    }, function (err) {
      show(mine.msg, listed(mine.names) + ': the file arrived but the page lost the connection while it was ' +
        'checked. Try again.');
      throw err;
    });
  };
})();
