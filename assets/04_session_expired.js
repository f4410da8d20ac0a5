// With a team password (callbacks/auth.py) a session lasts 12 hours. When it has expired, Dash's
// requests get 401: reload the page, which sends the browser to the login form instead of leaving
// a page whose callbacks silently fail.
(function () {
  const fetch0 = window.fetch;
  let reloading = false;
  window.fetch = function () {
    return fetch0.apply(this, arguments).then(function (resp) {
      if (resp.status === 401 && !reloading && String(resp.url).indexOf("/_dash-") !== -1) {
        reloading = true;
        window.location.reload();
      }
      return resp;
    });
  };
})();
