// Refuse a file over the upload limit in the browser, before it is read or sent (issue 7): a
// 220 MB file used to be read into a base64 string and crash the tab. The limit and the message's
// element come from the wrapper's data-max-bytes / data-msg-id (set in pages/*.py from the server's
// own limits). Listeners run in the capture phase on window, so the upload component never sees a
// refused file; dcc.Upload's max_size is the second line of defence (it drops such files silently).
(function () {
  function mb(bytes) { return (bytes / 1048576).toFixed(1) + ' MB'; }

  function check(event, files) {
    var box = event.target && event.target.closest ? event.target.closest('[data-max-bytes]') : null;
    if (!box || !files || !files.length) { return; }
    var limit = Number(box.getAttribute('data-max-bytes'));
    var msg = document.getElementById(box.getAttribute('data-msg-id'));
    var total = 0, names = [];
    for (var i = 0; i < files.length; i++) { total += files[i].size; names.push(files[i].name); }
    if (total <= limit) {
      if (msg) { msg.textContent = ''; msg.style.display = 'none'; }
      return;
    }
    event.preventDefault();
    event.stopImmediatePropagation();
    if (event.type === 'change') { event.target.value = ''; }
    if (msg) {
      msg.textContent = names.slice(0, 3).join(', ') + (names.length > 3 ? ' …' : '') + ': ' + mb(total) +
        ', more than the ' + mb(limit) + ' allowed per upload. Nothing was sent. Sample the data, or run ' +
        'the command-line tool on the full file.';
      msg.style.display = 'block';
    }
  }

  window.addEventListener('change', function (e) {
    if (e.target && e.target.type === 'file') { check(e, e.target.files); }
  }, true);
  window.addEventListener('drop', function (e) {
    check(e, e.dataTransfer ? e.dataTransfer.files : null);
  }, true);
})();
